"""A source's bronze and silver steps: extract it as it is, then migrate, remediate, validate
and quarantine its rows and check them against the source's quality gates."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from jammi import keys
from jammi.ingest.extract import extract
from jammi.ingest.partitions import PartitionRows, extract_partition
from jammi.ingest.watermark import WatermarkExtract, extract_incremental
from jammi.quality.frame_gate import frame_checks
from jammi.quality.outcome import CheckOutcome, blocking_failures
from jammi.silver.recipe import Silver, to_silver
from jammi.spec.project import Project
from jammi.storage import ensure_writable, frame_path, stored_frame, write_parquet_atomic
from jammi.tables.catalog import Catalog
from jammi.tables.frames import load_frame


def extract_raw(project: Project, source: str, run_id: str | None = None,
                full: bool = False) -> pd.DataFrame:
    """The rows of `source` as extracted; fails first when the artifact directory is unusable.

    A PostgreSQL source with a `watermark` reads only the rows past its committed watermark
    (every row when `full` or when it has no raw frame yet) and merges them into its raw frame;
    the position reached stays pending for `run_id` until the run succeeds
    (`jammi.ingest.watermark.commit_watermark`)."""
    ensure_writable(project.artifact_dir, f"source {source!r}")
    if project.sources[source].watermark:
        return extract_watermarked(project, source, run_id, full).rows
    return extract(project, source)


def extract_watermarked(project: Project, source: str, run_id: str | None = None,
                        full: bool = False) -> WatermarkExtract:
    """The incremental extract of a watermark source, with what it read and deleted."""
    stored = frame_path(project.artifact_dir, keys.raw(source)).exists()
    previous = load_frame(project.artifact_dir, keys.raw(source)) if stored else None
    return extract_incremental(project, source, previous, run_id, full)


def extract_raw_partition(project: Project, source: str, partition: str) -> PartitionRows:
    """The rows of one partition of `source`, as extracted."""
    ensure_writable(project.artifact_dir, f"source {source!r}")
    return extract_partition(project, source, partition)


@dataclass
class ValidatedSource:
    silver: Silver
    outcomes: list[CheckOutcome]
    rows_in: int


def _parent_keys(project: Project, source: str, valid: pd.DataFrame) -> dict[str, pd.Series]:
    """The referenced key columns of the source's foreign keys; a parent not materialized yet
    is left out (its check then reports that)."""
    parent_keys = {}
    for fk in project.sources[source].quality.foreign_keys:
        parent, _, column = fk.references.partition(".")
        if parent == source:
            parent_keys[fk.references] = valid[column]
        elif stored_frame(project.artifact_dir, keys.validated(parent)) is not None:
            parent_keys[fk.references] = load_frame(project.artifact_dir, keys.validated(parent),
                                                    [column])[column]
    return parent_keys


def validate_source(project: Project, source: str, run_id: str | None = None,
                    partition: str | None = None) -> ValidatedSource:
    """Silver for `source` (one partition of it, when given) from its stored raw frame, with
    every quality check recorded.

    Drift compares with the last frame whose blocking checks passed, not the last one written.
    """
    raw = load_frame(project.artifact_dir, keys.raw(source), partition=partition)
    silver = to_silver(raw, project.sources[source], source)
    baseline = frame_path(project.artifact_dir, f"{keys.validated(source)}.baseline")
    previous = pd.read_parquet(baseline) if baseline.exists() else None
    outcomes = frame_checks(project, source, silver.valid, silver.quarantine, previous,
                            _parent_keys(project, source, silver.valid))
    Catalog(project.artifact_dir).record_checks(run_id, keys.validated(source), partition, outcomes)
    if not blocking_failures(outcomes):
        write_parquet_atomic(silver.valid, baseline)
    return ValidatedSource(silver, outcomes, len(raw))
