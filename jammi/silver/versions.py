"""Which schema version each record was written in: its version tag, else its fields.

A record's *fields* are its non-null values in columns that some version declares; columns
no version declares pass through untouched and play no part (as extra columns do in a source
without versions). The version column itself is never a field.

Inference rule: a version *fits* a record when every field the version requires (the key
and its non-nullable columns) is present and the record has no field the version does not
declare. Of the versions that fit, the newest wins (versions are ordered oldest first as
declared under `versions:`, the current version last). A record that several versions fit
is *ambiguous*: it is consistent with all of them, and the newest reading is chosen because
it needs the fewest migration steps; declare a `version_column` when versions differ only in
types or meaning. A record that no version fits, or whose tag names no declared version, is
unresolved: it goes to quarantine with the reason, never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


def version_columns(spec: Any) -> dict[str, Mapping[str, Any]]:
    """Columns of every version of a source (`SourceSpec` with a `schema`), oldest first."""
    schema = spec.schema_
    columns: dict[str, Mapping[str, Any]] = {n: v.columns for n, v in schema.versions.items()}
    columns[schema.current] = spec.columns
    return columns


def declared_fields(spec: Any) -> set[str]:
    """Every column some version declares, except the version column."""
    names = {c for cols in version_columns(spec).values() for c in cols}
    return names - {spec.schema_.version_column}


def required_fields(columns: Mapping[str, Any], key: str, version_column: str | None = None) -> set[str]:
    required = {c for c, col in columns.items() if not col.nullable} | {key}
    return required - {version_column}


def normalise_tag(value: Any) -> str | None:
    """A version tag as text (`2.0` read from JSON as a float becomes `2`); None when missing."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _misfit(present: set[str], columns: Mapping[str, Any], key: str, version_column: str | None) -> str:
    """Why a version does not fit the fields `present` ('' when it fits)."""
    missing = sorted(required_fields(columns, key, version_column) - present)
    unknown = sorted(present - set(columns))
    parts = []
    if missing:
        parts.append(f"missing required field(s) {', '.join(missing)}")
    if unknown:
        parts.append(f"unknown field(s) {', '.join(unknown)}")
    return " and ".join(parts)


def fitting_versions(present: Iterable[str], spec: Any) -> tuple[list[str], dict[str, str]]:
    """The versions that fit a record with fields `present` (oldest first), and why the others don't."""
    fields = set(present)
    fits, why = [], {}
    for name, columns in version_columns(spec).items():
        reason = _misfit(fields, columns, spec.key, spec.schema_.version_column)
        if reason:
            why[name] = reason
        else:
            fits.append(name)
    return fits, why


def infer_version(present: Iterable[str], spec: Any) -> tuple[str | None, str]:
    """(newest fitting version, '') or (None, reason naming each version's misfit)."""
    fields = sorted(set(present))
    fits, why = fitting_versions(fields, spec)
    if fits:
        return fits[-1], ""
    detail = "; ".join(f"{name}: {reason}" for name, reason in why.items())
    return None, f"no schema version fits the fields {{{', '.join(fields)}}} ({detail})"


@dataclass
class Resolution:
    """The version of each row (None where unresolved) and why unresolved rows failed."""

    versions: pd.Series
    reasons: dict[Any, str] = field(default_factory=dict)
    tagged: int = 0
    inferred: int = 0
    ambiguous: int = 0


def resolve_versions(frame: pd.DataFrame, spec: Any) -> Resolution:
    """Assign each row of `frame` (same index) the schema version it was written in."""
    schema = spec.schema_
    names = set(version_columns(spec))
    known = [c for c in frame.columns if c in declared_fields(spec)]
    present = frame[known].notna()
    tagged = schema.version_column is not None and schema.version_column in frame.columns
    tags = (frame[schema.version_column].map(normalise_tag) if tagged
            else [None] * len(frame))
    result = Resolution(pd.Series(None, index=frame.index, dtype=object))
    assigned: dict[Any, str] = {}
    cache: dict[tuple, tuple[str | None, str, int]] = {}
    for idx, mask, tag in zip(frame.index, present.itertuples(index=False), tags, strict=True):
        fields = frozenset(c for c, here in zip(known, mask, strict=True) if here)
        if tag is not None:
            if tag not in names:
                result.reasons[idx] = (f"{schema.version_column}: unknown schema version {tag!r} "
                                       f"(declared: {', '.join(version_columns(spec))})")
                continue
            unknown = sorted(fields - set(version_columns(spec)[tag]))
            if unknown:
                result.reasons[idx] = (f"{schema.version_column}: the row is tagged {tag!r} but has "
                                       f"field(s) {tag!r} does not declare: {', '.join(unknown)}")
                continue
            assigned[idx] = tag
            result.tagged += 1
            continue
        if fields not in cache:
            chosen, reason = infer_version(fields, spec)
            cache[fields] = (chosen, reason, len(fitting_versions(fields, spec)[0]))
        chosen, reason, fits = cache[fields]
        if chosen is None:
            result.reasons[idx] = reason
            continue
        assigned[idx] = chosen
        result.inferred += 1
        result.ambiguous += fits > 1
    result.versions = pd.Series([assigned.get(i) for i in frame.index], index=frame.index, dtype=object)
    return result
