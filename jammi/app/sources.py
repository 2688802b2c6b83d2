"""A source's bronze and silver steps: extract it as it is, then migrate, remediate, validate
and quarantine its rows and check them against the source's quality gates."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from jammi import keys, store
from jammi.app import memo
from jammi.errors import ArtifactError, DiskFullError, JammiError
from jammi.ingest.extract import extract, extract_batches, source_files
from jammi.ingest.keys_ledger import KeyLedger
from jammi.ingest.partitions import partition_batches
from jammi.ingest.watermark import WatermarkExtract, extract_incremental
from jammi.quality.frame_gate import frame_checks, text_columns
from jammi.quality.outcome import CheckOutcome, blocking_failures, outcome_json
from jammi.quality.sample import Reservoir
from jammi.shared import (
    committing,
    frame_path,
    frame_writer,
    is_folder,
    partition_files,
    partition_path,
    read_frame,
    stored_frame,
    write_frame,
)
from jammi.silver.recipe import to_silver
from jammi.spec.automation import PATH_SEGMENT
from jammi.spec.project import Project
from jammi.storage import BATCH_ROWS, FrameWriter, ensure_writable
from jammi.store import Location
from jammi.tables.catalog import Catalog
from jammi.tables.frames import load_frame, register_frame, store_frame

log = logging.getLogger(__name__)


def extract_raw(project: Project, source: str, run_id: str | None = None,
                full: bool = False) -> pd.DataFrame:
    """The rows of `source` as extracted; fails first when the artifact directory is unusable.

    A PostgreSQL source with a `watermark` reads only the rows past its committed watermark
    (every row when `full` or when it has no raw frame yet) and merges them into its raw frame;
    the position reached stays pending for `run_id` until the run succeeds
    (`jammi.ingest.watermark.commit_watermark`)."""
    ensure_writable(project.artifact_dir, f"source {source!r}")  # this node's folder: locks, memos
    if project.sources[source].watermark:
        return extract_watermarked(project, source, run_id, full).rows
    return extract(project, source)


def extract_watermarked(project: Project, source: str, run_id: str | None = None,
                        full: bool = False) -> WatermarkExtract:
    """The incremental extract of a watermark source, with what it read and deleted."""
    stored = store.exists(frame_path(project.artifact_dir, keys.raw(source)))
    previous = load_frame(project.artifact_dir, keys.raw(source)) if stored else None
    return extract_incremental(project, source, previous, run_id, full)


@dataclass
class StoredFrame:
    """A frame written batch by batch: where, how many rows, and its first rows (a preview)."""

    path: Location
    rows: int
    head: pd.DataFrame
    unplaced: int = 0  # a timestamp partition's: source rows whose timestamp cannot be read
    watermark: WatermarkExtract | None = None
    unchanged: bool = False  # its inputs were the ones it was last made from: not written again


def _write(path: Location, batches, ledger: KeyLedger | None = None) -> FrameWriter:
    writer = frame_writer(path)
    try:
        for batch in batches:
            if ledger is not None:
                ledger.add(batch)
            writer.write(batch)
        if ledger is not None:
            ledger.check(lambda: (pd.read_parquet(p, columns=[ledger.key]) for p in writer.files()))
        writer.finish()  # beside the target: `committing` puts it in place
    except BaseException:
        writer.discard()
        raise
    return writer


def store_raw(project: Project, source: str, run_id: str | None = None, full: bool = False,
              partition: str | None = None) -> StoredFrame:
    """Extract `source` (one partition of it, when given) into `raw_<source>`, BATCH_ROWS rows at
    a time, so memory holds one batch whatever the source's size; null or duplicate keys refuse
    the run and nothing is written. A watermark source is merged with its raw frame whole
    (`extract_raw`)."""
    spec = project.sources[source]
    asset = keys.raw(source)
    ensure_writable(project.artifact_dir, f"source {source!r}")
    if spec.watermark:
        got = extract_watermarked(project, source, run_id, full)
        path = store_frame(project.artifact_dir, asset, got.rows, partition)
        return StoredFrame(path, len(got.rows), got.rows.head(10), watermark=got)
    path = _file(project, asset, partition)
    key = _raw_inputs(project, source, partition)
    done = memo.recall(path, key, [path]) if key else None
    if done is not None:  # the source files are byte for byte the ones last extracted
        register_frame(project.artifact_dir, asset, path, done["rows"], partition)
        return StoredFrame(path, done["rows"], head_of(path), done["unplaced"], unchanged=True)
    memo.forget(path)
    stored = _store_raw(project, source, partition, path)
    if key:
        try:
            memo.remember(path, key, [path], {"rows": stored.rows, "unplaced": stored.unplaced})
        except DiskFullError as err:  # the memo only spares the next run work: this run's frame stands
            log.warning("%s: %s", asset, err)
    return stored


def _raw_inputs(project: Project, source: str, partition: str | None) -> str | None:
    """The fingerprint of what a file source's extraction reads (None for other kinds, whose
    rows are read afresh every run)."""
    spec = project.sources[source]
    if spec.kind not in ("csv", "jsonl", "parquet"):
        return None
    part = spec.partitions
    try:
        if part is not None and part.by_path:  # the partition's own file
            files = source_files(project, source, spec.model_copy(
                update={"path": spec.path.replace(PATH_SEGMENT, partition)}))
        else:
            files = source_files(project, source, spec)
        if part is not None and part.dynamic == "files":
            files = [f for f in files if f.name == partition]
        if not files or not all(f.is_file() for f in files):
            return None
        return memo.fingerprint({"step": "raw", "spec": spec.model_dump(mode="json"), "partition": partition,
                                 "files": memo.content_digest(files)})
    except (JammiError, OSError):
        return None  # the extraction itself names what is wrong


def head_of(path: Location, rows: int = 10) -> pd.DataFrame:
    """The first rows of a stored frame, for a preview."""
    pf = store.parquet_file(path)
    batch = next(pf.iter_batches(batch_size=rows), None)
    return batch.to_pandas() if batch is not None else pf.schema_arrow.empty_table().to_pandas()


def _store_raw(project: Project, source: str, partition: str | None, path: Location) -> StoredFrame:
    spec = project.sources[source]
    asset = keys.raw(source)
    ledger = KeyLedger(source, spec.key, spec.columns[spec.key].type)
    if partition is None:
        writer = _write(path, extract_batches(project, source), ledger)
        with committing([writer]):
            register_frame(project.artifact_dir, asset, path, writer.rows, digest=writer.digest)
        return StoredFrame(path, writer.rows, writer.head)
    got = partition_batches(project, source, partition)
    writer = _write(path, got.batches, ledger)
    with committing([writer]):
        register_frame(project.artifact_dir, asset, path, writer.rows, partition, digest=writer.digest)
    return StoredFrame(path, writer.rows, writer.head, got.unplaced)


@dataclass
class ValidatedSource:
    """What validating a source wrote (`validated` and `quarantine`) and its checks' outcomes."""

    validated: StoredFrame
    quarantine: StoredFrame
    metadata: dict[str, int]
    first_reason: str
    outcomes: list[CheckOutcome]
    rows_in: int
    sampled: bool = False  # whether the checks saw a uniform sample, not every row


def _parent_keys(project: Project, source: str, valid: Path) -> dict[str, pd.Series]:
    """The referenced key columns of the source's foreign keys; a parent not materialized yet
    is left out (its check then reports that). A key of the source itself is read from the
    validated file just written (`valid`)."""
    parent_keys = {}
    for fk in project.sources[source].quality.foreign_keys:
        parent, _, column = fk.references.partition(".")
        if parent == source:
            parent_keys[fk.references] = pd.read_parquet(valid, columns=[column])[column]
        elif stored_frame(project.artifact_dir, keys.validated(parent)) is not None:
            parent_keys[fk.references] = load_frame(project.artifact_dir, keys.validated(parent),
                                                    [column])[column]
    return parent_keys


def _file(project: Project, asset: str, partition: str | None) -> Location:
    return (frame_path(project.artifact_dir, asset) if partition is None
            else partition_path(project.artifact_dir, asset, partition))


def _silver_batches(raw_file: Location) -> Iterator[pd.DataFrame]:
    pf = store.parquet_file(raw_file)
    if pf.metadata.num_rows == 0:
        yield pf.schema_arrow.empty_table().to_pandas()
        return
    for batch in pf.iter_batches(batch_size=BATCH_ROWS):
        yield batch.to_pandas()


def validate_source(project: Project, source: str, run_id: str | None = None,
                    partition: str | None = None) -> ValidatedSource:
    """Silver for `source` (one partition of it, when given) from its stored raw frame, batch
    by batch: each batch is migrated, remediated, validated and quarantined, and written to
    `validated_<source>` and `quarantine_<source>`. The quality checks see a uniform sample of
    at most SAMPLE_ROWS valid rows (every row of a smaller source), with exact row counts.

    Drift compares with the last sample whose blocking checks passed, not the last one written.
    """
    spec = project.sources[source]
    validated, quarantine = keys.validated(source), keys.quarantine(source)
    raw_file = _file(project, keys.raw(source), partition)
    if not store.exists(raw_file):
        which = "" if partition is None else f" partition {partition!r}"
        raise ArtifactError(f"asset {keys.raw(source)!r}{which} has no stored output at {raw_file}; "
                            "materialize it first")
    where = {"partition": partition} if partition is not None else {}
    valid_path, quarantine_path = _file(project, validated, partition), _file(project, quarantine, partition)
    baseline = frame_path(project.artifact_dir, f"{validated}.baseline")
    key = _silver_inputs(project, source, raw_file, baseline, partition)
    outputs = [valid_path, quarantine_path]
    done = memo.recall(valid_path, key, outputs)
    if done is not None:  # the same raw rows, spec and references as the last run: its result holds
        register_frame(project.artifact_dir, validated, valid_path, done["valid"], **where,
                       unique_key=spec.key)
        register_frame(project.artifact_dir, quarantine, quarantine_path, done["quarantined"], **where)
        outcomes = [CheckOutcome(**o) for o in done["outcomes"]]
        Catalog(project.artifact_dir).record_checks(run_id, validated, partition, outcomes)
        return ValidatedSource(StoredFrame(valid_path, done["valid"], head_of(valid_path), unchanged=True),
                               StoredFrame(quarantine_path, done["quarantined"], head_of(quarantine_path),
                                           unchanged=True),
                               done["metadata"], done["first_reason"], outcomes, done["rows_in"],
                               done["sampled"])
    memo.forget(valid_path)
    run = _validate(project, source, run_id, partition, raw_file, valid_path, quarantine_path, baseline)
    try:
        memo.remember(valid_path, _silver_inputs(project, source, raw_file, baseline, partition), outputs, {
            "valid": run.validated.rows, "quarantined": run.quarantine.rows, "metadata": run.metadata,
            "first_reason": run.first_reason, "outcomes": [outcome_json(o) for o in run.outcomes],
            "rows_in": run.rows_in, "sampled": run.sampled})
    except DiskFullError as err:  # the memo only spares the next run work: this run's frames stand
        log.warning("%s: %s", keys.validated(source), err)
    return run


def _silver_inputs(project: Project, source: str, raw_file: Location, baseline: Location,
                   partition: str | None) -> str:
    """The fingerprint of everything validation and its checks read: the raw rows, the source's
    spec, the columns its pipelines embed, the drift baseline and the referenced sources."""
    spec = project.sources[source]
    parents = {}
    for fk in spec.quality.foreign_keys:
        parent = fk.references.partition(".")[0]
        stored = stored_frame(project.artifact_dir, keys.validated(parent))
        files = [] if stored is None else partition_files(stored) if is_folder(stored) else [stored]
        parents[parent] = [memo.file_state(f) for f in files]
    return memo.fingerprint({"step": "silver", "raw": memo.file_state(raw_file), "partition": partition,
                             "spec": spec.model_dump(mode="json"), "texts": text_columns(project, source),
                             "baseline": memo.file_state(baseline), "parents": parents})


def _validate(project: Project, source: str, run_id: str | None, partition: str | None, raw_file: Location,
              valid_path: Location, quarantine_path: Location, baseline: Location) -> ValidatedSource:
    spec = project.sources[source]
    validated, quarantine = keys.validated(source), keys.quarantine(source)
    where = {"partition": partition} if partition is not None else {}
    valid_w, quarantine_w = frame_writer(valid_path), frame_writer(quarantine_path)
    sample, rejected = Reservoir(), []
    counts: Counter = Counter()
    rows_in, first_reason = 0, ""
    try:
        for raw in _silver_batches(raw_file):
            silver = to_silver(raw, spec, source)
            rows_in += len(raw)
            valid_w.write(silver.valid)
            quarantine_w.write(silver.quarantine)
            sample.add(silver.valid)
            if len(silver.quarantine) and sum(map(len, rejected)) < sample.size:
                rejected.append(silver.quarantine)
            first_reason = first_reason or silver.first_reason()
            counts.update(silver.metadata())
        # both frames are finished beside their targets and replace them only once everything
        # else succeeded: a step that fails (a full disk, say) keeps its previous frames
        finished = valid_w.finish()
        quarantine_w.finish()
        checked = sample.frame()
        quarantined = pd.concat(rejected, ignore_index=True) if rejected else quarantine_w.head
        previous = read_frame(baseline) if store.exists(baseline) else None
        outcomes = frame_checks(project, source, checked, quarantined, previous,
                                _parent_keys(project, source, finished),
                                total_rows=rows_in, quarantined_rows=quarantine_w.rows,
                                sampled=valid_w.rows if sample.sampled else None)
        with committing([valid_w, quarantine_w]):
            register_frame(project.artifact_dir, validated, valid_path, valid_w.rows, **where,
                           unique_key=spec.key, digest=valid_w.digest)
            register_frame(project.artifact_dir, quarantine, quarantine_path, quarantine_w.rows, **where,
                           digest=quarantine_w.digest)
            Catalog(project.artifact_dir).record_checks(run_id, validated, partition, outcomes)
    except BaseException:
        valid_w.discard()
        quarantine_w.discard()
        raise
    if not blocking_failures(outcomes):
        try:
            write_frame(checked, baseline)
        except DiskFullError as err:  # the baseline only moves drift's reference: the run stands
            log.warning("drift baseline of %s not updated: %s", validated, err)
    return ValidatedSource(StoredFrame(valid_path, valid_w.rows, valid_w.head),
                           StoredFrame(quarantine_path, quarantine_w.rows, quarantine_w.head),
                           dict(counts), first_reason, outcomes, rows_in, sample.sampled)
