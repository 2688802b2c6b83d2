"""Blue/green embedding tables: list a pipeline's tables with their generation and active
flag, roll the active pointer back to an older ready table, remove tables no longer needed.

A new table is built beside the active one and switched to only once ready (see
`Catalog.activate`); these are the operator's side of that protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from jammi import store
from jammi.errors import ArtifactError
from jammi.storage import tmp_files
from jammi.store import Location
from jammi.tables.catalog import STATUS_FAILED, STATUS_READY, Catalog, Pointer, TableRecord
from jammi.tables.contract import SUFFIXES, sidecar
from jammi.tables.versions import Version

LIST_COLUMNS = ["table_name", "pipeline", "status", "active", "model_id", "text_columns",
                "source_schema_version", "generation", "rows_embedded", "created_at"]


@dataclass(frozen=True)
class RemovedTable:
    table_name: str
    pipeline: str
    deleted: list[Location]


def list_tables(catalog: Catalog, pipeline: str | None = None) -> pd.DataFrame:
    """Every table (of `pipeline`), newest first, with whether it is the one search serves."""
    active = catalog.active_names()
    rows = [
        {
            "table_name": t.table_name, "pipeline": t.pipeline, "status": t.status,
            "active": t.table_name in active, "model_id": t.model_id,
            "text_columns": ", ".join(t.text_columns),
            "source_schema_version": t.source_schema_version, "generation": t.generation,
            "rows_embedded": t.rows_embedded, "created_at": t.created_at,
        }
        for t in catalog.tables(pipeline=pipeline)
    ]
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def rollback(catalog: Catalog, pipeline: str, to: str | None = None) -> Pointer:
    """Make `to`, else the table active before the current one (else the newest ready table
    older than it), the active table of `pipeline`, atomically."""
    if to is None:
        to = _previous(catalog, pipeline)
    return catalog.switch_active(pipeline, to)


def _previous(catalog: Catalog, pipeline: str) -> str:
    active = catalog.active(pipeline=pipeline)
    if active is None:
        known = "has no embedding tables" if not catalog.tables(pipeline=pipeline) else "has no ready table"
        raise ArtifactError(f"pipeline {pipeline!r} {known}; nothing to roll back")
    ready = {t.table_name: t for t in catalog.tables(pipeline=pipeline, status=STATUS_READY)}
    pointer = catalog.pointer(pipeline)
    if pointer and pointer.table_name == active.table_name and pointer.previous_table in ready:
        return pointer.previous_table
    older = [t for t in ready.values()
             if (t.created_at, t.table_name) < (active.created_at, active.table_name)]
    if not older:
        raise ArtifactError(
            f"pipeline {pipeline!r}: no ready table older than the active {active.table_name!r} "
            "to roll back to; `jammi tables list` lists tables"
        )
    return max(older, key=lambda t: (t.created_at, t.table_name)).table_name


def remove_table(catalog: Catalog, table_name: str) -> RemovedTable:
    """Mark a table `removed` (refused for a pipeline's active table), then delete its files."""
    rec = catalog.mark_removed(table_name)
    deleted = []
    versions = store.listdir(rec.tables_dir, f"{rec.table_name}.v*")
    leftover = [] if store.is_url(rec.parquet_path) else tmp_files(Path(rec.parquet_path))
    for path in (*(sidecar(rec.base_path, s) for s in SUFFIXES), *leftover, *versions):
        if store.delete(path):
            deleted.append(path)
    return RemovedTable(rec.table_name, rec.pipeline, deleted)


def prune_tables(catalog: Catalog, pipeline: str, keep: int) -> list[RemovedTable]:
    """Remove `pipeline`'s ready tables beyond the `keep` newest, never its active table or its
    rollback target, and likewise its failed tables beyond the `keep` newest (their files are
    kept for inspection until then)."""
    active = catalog.active(pipeline=pipeline)
    pointer = catalog.pointer(pipeline)
    spared = {active.table_name if active else None, pointer.previous_table if pointer else None,
              pointer.table_name if pointer else None}
    removed = []
    for status in (STATUS_READY, STATUS_FAILED):
        older = [t for t in catalog.tables(pipeline=pipeline, status=status) if t.table_name not in spared]
        removed += [remove_table(catalog, t.table_name) for t in older[keep:]]
    return removed


VERSION_COLUMNS = ["version", "current", "rows", "segments", "deleted_rows", "outcome", "added",
                   "changed", "deleted", "unchanged", "rows_encoded", "committed_at"]


def active_table(catalog: Catalog, pipeline: str) -> TableRecord:
    rec = catalog.active(pipeline=pipeline)
    if rec is None:
        raise ArtifactError(f"pipeline {pipeline!r} has no ready embedding table; run `jammi materialize`")
    return rec


def list_versions(catalog: Catalog, pipeline: str) -> pd.DataFrame:
    """The versions of the pipeline's active table, oldest first, with what each refresh did."""
    rec = active_table(catalog, pipeline)
    current = catalog.current_version(rec).version
    rows = [{"version": v.version, "current": v.version == current, "rows": v.rows,
             "segments": len(v.segments), "deleted_rows": v.deleted_rows, **v.counts.as_dict(),
             "committed_at": v.committed_at} for v in catalog.versions(rec.table_name)]
    return pd.DataFrame(rows, columns=VERSION_COLUMNS)


def rollback_version(catalog: Catalog, pipeline: str, version: int) -> Version:
    """Serve an earlier committed version of the pipeline's active table, atomically."""
    rec = active_table(catalog, pipeline)
    return catalog.set_current_version(pipeline, rec.table_name, version)
