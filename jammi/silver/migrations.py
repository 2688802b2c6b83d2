"""Migration chains between schema versions: which declared path to take, and migrating a
frame along it (`migrate_frame`, the pure function behind lazy migration and backfills).

Path rule: the shortest chain of declared migrations (a direct `v1 -> v3` beats `v1 -> v2 ->
v3`); among equally short chains, the one whose migrations were declared first.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from jammi.errors import SchemaMigrationError
from jammi.silver.versions import declared_fields, version_columns
from jammi.spec.schema import migration_path
from jammi.spec.steps import apply_to_frame


def restrict_to_version(frame: pd.DataFrame, spec: Any, version: str) -> pd.DataFrame:
    """Rows of `version` with exactly its columns (null where absent), plus undeclared pass-through
    columns; columns of other versions must be null in these rows."""
    columns = version_columns(spec)[version]
    declared = declared_fields(spec)
    version_column = spec.schema_.version_column
    foreign = [c for c in frame.columns if c in declared and c not in columns]
    stray = [c for c in foreign if frame[c].notna().any()]
    if stray:
        raise SchemaMigrationError(
            f"rows of {version} hold values in column(s) {version} does not declare: {', '.join(stray)}"
        )
    extra = [c for c in frame.columns if c not in declared and c not in columns]
    out = frame.reindex(columns=[*columns, *extra])
    if version_column and version_column not in columns and version_column in frame.columns:
        out = out.drop(columns=[version_column])
    return out


def migrate_rows(
    frame: pd.DataFrame, spec: Any, start: str, end: str | None = None
) -> tuple[pd.DataFrame, dict[Any, str]]:
    """Rows of version `start` migrated to `end` (default: current) along the declared path,
    same index, the target's columns first; and the rows that failed (index -> reason), which
    are left out of the frame."""
    schema = spec.schema_
    end = end or schema.current
    names = version_columns(spec)
    for version in (start, end):
        if version not in names:
            raise SchemaMigrationError(f"unknown schema version {version!r} (declared: {', '.join(names)})")
    path = migration_path(schema, start, end)
    if path is None:
        raise SchemaMigrationError(f"no declared chain of migrations leads from {start} to {end}")
    out = restrict_to_version(frame, spec, start)
    failures: dict[Any, str] = {}
    for migration in path:
        out, failed = apply_to_frame(out, migration)
        failures.update({i: r for i, r in failed.items() if i not in failures})
    out = out.drop(index=list(failures))
    target = list(names[end])
    extra = [c for c in out.columns if c not in target]
    out = out.reindex(columns=[*target, *extra])
    if schema.version_column and schema.version_column in target:
        out[schema.version_column] = end
    return out, failures


def migrate_frame(
    frame: pd.DataFrame, spec: Any, from_version: str, to_version: str | None = None
) -> pd.DataFrame:
    """Every row of `frame` (written in `from_version`) migrated to `to_version` (default: the
    current version) along the declared path; SchemaMigrationError naming the rows that a step
    could not migrate, so a backfill never rewrites data with rows lost."""
    out, failures = migrate_rows(frame, spec, from_version, to_version)
    if failures:
        listed = "; ".join(f"row {i}: {r}" for i, r in list(failures.items())[:5])
        raise SchemaMigrationError(f"{len(failures)} row(s) could not be migrated: {listed}")
    return out
