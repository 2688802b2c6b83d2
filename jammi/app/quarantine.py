"""Inspecting a source's quarantined rows and re-admitting them once fixed upstream.

Re-admission re-extracts the source, remediates and validates it in memory, reports for
each quarantined key whether it now passes, and when at least one does, re-materializes
the source so the fixed rows reach `validated_<source>` and the embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd

from jammi import keys, store
from jammi.errors import ArtifactError, JammiError
from jammi.ingest.extract import extract
from jammi.shared import frame_path, read_frame
from jammi.silver.pandera_model import REASON_COLUMN
from jammi.silver.recipe import to_silver
from jammi.spec.project import Project

READMITTED = "re-admitted"
STILL_FAILING = "still failing"
NOT_QUARANTINED = "not quarantined"
NOT_IN_SOURCE = "not in source"
STATUS_COLUMNS = ["key", "status", "reason"]


@dataclass
class Readmission:
    """Per-key statuses and, when something was re-admitted, the materialization outcome."""

    statuses: pd.DataFrame
    outcome: object | None = None  # what `materialize` returned

    @property
    def readmitted(self) -> list[str]:
        return self.statuses.loc[self.statuses["status"] == READMITTED, "key"].tolist()


def _check_source(project: Project, source: str) -> None:
    if source not in project.sources:
        declared = ", ".join(project.sources) or "none"
        raise JammiError(f"unknown source {source!r} (declared: {declared})")


def read_quarantine(project: Project, source: str, limit: int | None = None) -> pd.DataFrame:
    """The rows of `quarantine_<source>` as extracted, with their `_quarantine_reason`."""
    _check_source(project, source)
    asset = keys.quarantine(source)
    path = frame_path(project.artifact_dir, asset)
    if not store.exists(path):
        raise ArtifactError(f"{asset} is not materialized yet ({path}); run `jammi materialize` first")
    frame = read_frame(path)
    return frame.head(limit) if limit is not None else frame


def _keys(frame: pd.DataFrame, key: str) -> list[str]:
    return frame[key].astype(str).tolist() if len(frame) else []


def check_readmission(project: Project, source: str, keys: Iterable[str] | None = None) -> pd.DataFrame:
    """key/status/reason for each quarantined key (or each of `keys`), against the source now."""
    spec = project.sources[source]
    stored = read_quarantine(project, source)
    quarantined = dict(zip(_keys(stored, spec.key), stored.get(REASON_COLUMN, []), strict=False))
    wanted = list(dict.fromkeys(str(k) for k in keys)) if keys else list(quarantined)
    raw = extract(project, source)
    silver = to_silver(raw, spec, source)
    passing = set(_keys(raw.loc[silver.valid.index], spec.key))
    failing = dict(zip(_keys(silver.quarantine, spec.key), silver.quarantine.get(REASON_COLUMN, []),
                       strict=False))
    rows = []
    for key in wanted:
        if key not in quarantined:
            rows.append((key, NOT_QUARANTINED, ""))
        elif key in passing:
            rows.append((key, READMITTED, ""))
        elif key in failing:
            rows.append((key, STILL_FAILING, failing[key]))
        else:
            rows.append((key, NOT_IN_SOURCE, "the key is no longer in the source"))
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)


def readmit(
    project: Project,
    source: str,
    keys: Iterable[str] | None = None,
    *,
    materialize: Callable[[list[str]], object],
) -> Readmission:
    """Check the quarantined keys and, if any of them now passes, call `materialize` with the
    source's name (the CLI passes the Dagster runner) and keep what it returns."""
    result = Readmission(check_readmission(project, source, keys))
    if result.readmitted:
        result.outcome = materialize([source])
    return result
