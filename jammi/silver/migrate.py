"""Lazy migration on read: a raw frame whose rows were written in several schema versions,
turned into rows of the current version before validation.

Rows keep their raw index, so quarantined rows can still be shown as extracted. Rows whose
version cannot be resolved, and rows a migration step cannot migrate, are returned apart with
the reason, for quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from jammi.silver.migrations import migrate_rows
from jammi.silver.pandera_model import REASON_COLUMN
from jammi.silver.version_models import invalid_in_version
from jammi.silver.versions import resolve_versions, version_columns


@dataclass
class CurrentFrame:
    """Raw rows in the current version (`frame`), the raw rows that could not be brought there
    (`unresolved`, with `_quarantine_reason`), and counts for the asset's metadata."""

    frame: pd.DataFrame
    unresolved: pd.DataFrame
    rows_per_version: dict[str, int] = field(default_factory=dict)
    migrated: int = 0
    ambiguous: int = 0

    def metadata(self) -> dict[str, int]:
        if not self.rows_per_version:
            return {}
        return {
            **{f"schema/rows_{v}": n for v, n in self.rows_per_version.items()},
            "schema/rows_migrated": self.migrated,
            "schema/rows_ambiguous": self.ambiguous,
            "schema/rows_unresolved": len(self.unresolved),
        }

    def with_unresolved(self, quarantine: pd.DataFrame) -> pd.DataFrame:
        """`quarantine` followed by the unresolved rows."""
        if not len(self.unresolved):
            return quarantine
        return pd.concat([quarantine, self.unresolved], ignore_index=True)


def _unresolved(raw: pd.DataFrame, reasons: dict[Any, str]) -> pd.DataFrame:
    rows = raw.loc[[i for i in raw.index if i in reasons]].copy()
    rows[REASON_COLUMN] = [reasons[i] for i in rows.index]
    return rows.reset_index(drop=True)


def to_current_version(raw: pd.DataFrame, spec: Any, source: str = "source") -> CurrentFrame:
    """Resolve each row's version and migrate older rows to the current version; an older row
    must first pass its own version's Pandera model (schemas/models.py).

    A source without a `schema:` block passes through unchanged.
    """
    if spec.schema_ is None:
        return CurrentFrame(raw, raw.iloc[0:0].assign(**{REASON_COLUMN: pd.Series(dtype=object)}))
    schema = spec.schema_
    resolution = resolve_versions(raw, spec)
    reasons = dict(resolution.reasons)
    parts, counts, migrated = [], {}, 0
    for version in version_columns(spec):
        rows = raw.loc[resolution.versions == version]
        counts[version] = len(rows)
        if not len(rows):
            continue
        if version != schema.current:
            invalid = invalid_in_version(rows, source, spec, version)
            reasons.update(invalid)
            rows = rows.drop(index=list(invalid))
        out, failed = migrate_rows(rows, spec, version)
        reasons.update(failed)
        parts.append(out)
        if version != schema.current:
            migrated += len(out)
    current = list(spec.columns)
    frame = pd.concat(parts) if parts else raw.iloc[0:0].reindex(columns=current)
    extra = [c for c in frame.columns if c not in current]
    frame = frame.reindex(index=[i for i in raw.index if i in frame.index], columns=[*current, *extra])
    return CurrentFrame(frame, _unresolved(raw, reasons), counts, migrated, resolution.ambiguous)
