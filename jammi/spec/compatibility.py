"""Compatibility of two schema versions, field by field, in the Avro / Confluent sense.

Definitions (Confluent Schema Registry compatibility types, old = writer of existing data):

- **backward**: a reader using the *new* schema can read data written with the *old* one.
- **forward**: a reader using the *old* schema can read data written with the *new* one.
- **full**: both backward and forward.
- **breaking** (Confluent `NONE`): neither.

Per field (a nullable column has the implicit default null, as an Avro `["null", T]` union with
`default: null` does):

| change                               | level    | why                                               |
|--------------------------------------|----------|---------------------------------------------------|
| unchanged                            | full     |                                                   |
| added, nullable (or filled by `add`) | full     | new readers default it, old readers ignore it     |
| added, required, no default          | forward  | old data lacks it                                 |
| removed, was nullable                | full     | old readers default it, new readers ignore it     |
| removed, was required                | backward | old readers need it                               |
| nullable -> required                 | forward  | old data may hold nulls                           |
| required -> nullable                 | backward | old readers reject the nulls of new data          |
| int -> float (Avro promotion)        | backward | new readers widen old ints; old readers can't     |
| float -> int                         | forward  | the reverse                                       |
| any other type change                | breaking | neither side reads the other's values             |

A schema's level is the meet of its fields' levels (full > backward, forward > breaking;
backward with forward is breaking). Row-level rules (ge, le, isin, max_length) are not
compared: they are enforced per row by validation, which quarantines the rows that break them.

With a `migration`, the old schema is first transformed by the migration's steps, so the
result says whether *migrated* old data is readable by the new schema; each field's reason
then names the step that produced it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jammi.spec.schema import MigrationSpec
from jammi.spec.steps import Col, apply_to_schema

Level = Literal["full", "backward", "forward", "breaking"]
PROMOTIONS = {("int", "float")}


def meet(a: Level, b: Level) -> Level:
    """The weaker of two levels; backward with forward is breaking."""
    if a == b or b == "full":
        return a
    if a == "full":
        return b
    return "breaking"


@dataclass(frozen=True)
class FieldChange:
    """How one field changed, its compatibility level, why, and the step that would fix it."""

    field: str
    change: Literal["unchanged", "migrated", "added", "removed", "type", "nullability", "type+nullability"]
    level: Level
    reason: str
    old_type: str | None = None
    new_type: str | None = None
    fix: str | None = None


@dataclass(frozen=True)
class Compatibility:
    level: Level
    changes: tuple[FieldChange, ...]

    @property
    def backward(self) -> bool:
        return self.level in ("full", "backward")

    @property
    def forward(self) -> bool:
        return self.level in ("full", "forward")

    def field(self, name: str) -> FieldChange:
        return next(c for c in self.changes if c.field == name)

    def reasons(self) -> dict[str, str]:
        """Reason per changed field (unchanged fields left out)."""
        return {c.field: c.reason for c in self.changes if c.change != "unchanged"}


def as_cols(columns: Mapping[str, Any] | Any) -> dict[str, Col]:
    """Columns (ColumnSpec-like: `.type`, `.nullable`), or anything with `.columns`, as Cols."""
    columns = getattr(columns, "columns", columns)
    return {name: c if isinstance(c, Col) else Col(c.type, c.nullable) for name, c in columns.items()}


def _type_level(old: str, new: str) -> Level:
    if old == new:
        return "full"
    if (old, new) in PROMOTIONS:
        return "backward"
    if (new, old) in PROMOTIONS:
        return "forward"
    return "breaking"


def _compare_field(
    name: str, old: Col | None, new: Col | None, label: str, removed: dict[str, Col]
) -> FieldChange:
    note = f" ({old.origin} by migration {label})" if old is not None and old.origin else ""
    if old is None:
        if new.nullable:
            return FieldChange(name, "added", "full", f"added optional field ({new.type}, nullable)",
                               None, new.type)
        fix = f"add `add: {{column: {name}, default: <{new.type} value>}}` to migrations {label}"
        same_type = [r for r, col in removed.items() if col.type == new.type]
        if same_type:
            fix += " (or `" + "` / `".join(f"rename: {{from: {r}, to: {name}}}" for r in same_type) + "`)"
        return FieldChange(name, "added", "forward", f"added required field ({new.type}) with no "
                           "default: old data lacks it", None, new.type, fix)
    if new is None:
        if old.nullable:
            return FieldChange(name, "removed", "full", f"removed optional field ({old.type}){note}",
                               old.type, None)
        return FieldChange(name, "removed", "backward", f"removed required field ({old.type}): old "
                           f"readers need it{note}", old.type, None)
    type_level = _type_level(old.type, new.type)
    if old.nullable == new.nullable:
        null_level: Level = "full"
    else:
        null_level = "forward" if old.nullable else "backward"
    level = meet(type_level, null_level)
    parts = []
    if type_level != "full":
        how = {"backward": "a promotion old data widens to", "forward": "a narrowing; old readers widen it",
               "breaking": "neither side reads the other's values"}[type_level]
        parts.append(f"type {old.type} -> {new.type} ({how})")
    if null_level == "forward":
        parts.append("nullable -> required (old data may hold nulls)")
    elif null_level == "backward":
        parts.append("required -> nullable (old readers reject nulls)")
    change = ("type+nullability" if len(parts) == 2 else "type" if type_level != "full"
              else "nullability" if parts else "migrated" if old.origin else "unchanged")
    if parts:
        reason = "; ".join(parts) + note
    else:
        reason = f"{old.origin} by migration {label}" if old.origin else "unchanged"
    fix = (f"add `cast: {{column: {name}, to: {new.type}}}` to migrations {label}"
           if type_level in ("breaking", "forward") else None)
    return FieldChange(name, change, level, reason, old.type, new.type, fix)


def compare_schemas(
    old: Mapping[str, Any] | Any,
    new: Mapping[str, Any] | Any,
    migration: MigrationSpec | None = None,
    *,
    deprecated: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    label: str | None = None,
) -> Compatibility:
    """Compatibility of `new` with `old` (column mappings or versions), after `migration` if given.

    `deprecated` lists the old columns a `drop` step may remove (default: the old version's
    `deprecated`, or every old column when plain columns are given); `ignore` leaves columns
    out (the version column); `label` names the migration in fixes (default `migration.label`).
    """
    if deprecated is None:
        deprecated = getattr(old, "deprecated", None)
    before, after = as_cols(old), as_cols(new)
    deprecated = list(before) if deprecated is None else list(deprecated)
    label = label or (migration.label if migration else "old->new")
    if migration is not None:
        before = apply_to_schema(before, migration, deprecated=deprecated, target=after, protected={},
                                 where=f"migrations {migration.label}")
    skip = set(ignore)
    removed = {n: c for n, c in before.items() if n not in after and n not in skip}
    changes = []
    for name in [*after, *(n for n in before if n not in after)]:
        if name not in skip:
            changes.append(_compare_field(name, before.get(name), after.get(name), label, removed))
    level: Level = "full"
    for change in changes:
        level = meet(level, change.level)
    return Compatibility(level, tuple(changes))
