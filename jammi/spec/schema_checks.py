"""Load-time checks of a source's `schema:` block (called from `config.SourceSpec`).

Each problem is a ValueError whose text starts with the field path under the source, so the
loader reports `<file>: sources.<name>: schema.<path>: <what is wrong>`.

The compatibility gate: every declared migration, applied to its older version's columns,
must yield columns the newer version reads (backward compatible, see `compatibility`):
no required column left missing, no type change other than the int -> float promotion, and
no column left over (a removed column must be renamed, split, merged or dropped as
deprecated). Nullable -> required is allowed: rows with nulls are quarantined at validation.
"""

from __future__ import annotations

from typing import Any

from jammi.spec.compatibility import as_cols, compare_schemas
from jammi.spec.schema import migration_path
from jammi.spec.steps import apply_to_schema


def _cycle(schema: Any) -> list[str] | None:
    edges: dict[str, list[str]] = {}
    for m in schema.migrations:
        edges.setdefault(m.from_, []).append(m.to)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                return [*trail[trail.index(nxt):], nxt] if nxt in trail else [*trail, nxt]
            if nxt not in state and (found := visit(nxt, [*trail, nxt])):
                return found
        state[node] = 2
        return None

    for start in edges:
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def _check_graph(spec: Any) -> None:
    schema = spec.schema_
    order = schema.names
    seen: set[tuple[str, str]] = set()
    for i, m in enumerate(schema.migrations):
        where = f"schema.migrations[{i}]"
        for end, version in (("from", m.from_), ("to", m.to)):
            if version not in order:
                raise ValueError(f"{where}.{end}: unknown schema version {version!r} "
                                 f"(declared: {', '.join(order)})")
        if (m.from_, m.to) in seen:
            raise ValueError(f"{where}: a second migration {m.label}; declare each pair once")
        seen.add((m.from_, m.to))
    if cycle := _cycle(schema):
        raise ValueError(f"schema.migrations: the migrations form a cycle: {' -> '.join(cycle)}; "
                         "migrations must lead from older to newer versions")
    for i, m in enumerate(schema.migrations):
        if order.index(m.from_) >= order.index(m.to):
            raise ValueError(f"schema.migrations[{i}]: {m.label} leads from a newer to an older version "
                             f"(versions are ordered as declared, current last: {', '.join(order)})")
    for version in schema.versions:
        if migration_path(schema, version, schema.current) is None:
            declared = ", ".join(m.label for m in schema.migrations) or "none"
            raise ValueError(f"schema.versions.{version}: no chain of migrations leads from {version} to "
                             f"the current version {schema.current} (declared: {declared}); add a "
                             f"migration `{{from: {version}, to: ...}}`")


def _check_migration(spec: Any, i: int) -> None:
    schema = spec.schema_
    m = schema.migrations[i]
    old = schema.versions[m.from_]
    new_columns = spec.columns if m.to == schema.current else schema.versions[m.to].columns
    protected = {spec.key: "key column"}
    if schema.version_column:
        protected[schema.version_column] = "version column"
    ignore = {schema.version_column} - {None}
    where = f"schema.migrations[{i}] ({m.label})"
    apply_to_schema(as_cols(old.columns), m, deprecated=old.deprecated, target=dict(new_columns),
                    protected=protected, where=where)
    result = compare_schemas(old, new_columns, m, ignore=ignore)
    for change in result.changes:
        if change.change == "added" and change.level != "full":
            raise ValueError(f"{where}: field {change.field!r} ({change.new_type}, required) is in "
                             f"{m.to} but migrated {m.from_} rows lack it; {change.fix}")
        if change.change == "removed":
            raise ValueError(
                f"{where}: field {change.field!r} ({change.old_type}) of {m.from_} is not in {m.to} and "
                f"no step removes it; rename, split or merge it into a column of {m.to}, or declare it in "
                f"versions.{m.from_}.deprecated and add `drop: {{column: {change.field}}}` to migrations "
                f"{m.label}"
            )
        if change.fix and change.change in ("type", "type+nullability"):
            raise ValueError(f"{where}: field {change.field!r} changes type {change.old_type} -> "
                             f"{change.new_type}, which {m.to} cannot read from {m.from_} data; "
                             f"{change.fix}")


def check_source_schema(spec: Any) -> None:
    """Validate `spec.schema_` against the source (`SourceSpec`); ValueError on the first problem."""
    schema = spec.schema_
    vc = schema.version_column
    if vc is not None:
        if vc not in spec.columns:
            raise ValueError(f"schema.version_column: {vc!r} is not a declared column "
                             f"(declared: {', '.join(spec.columns)})")
        if spec.columns[vc].type != "str":
            raise ValueError(f"schema.version_column: {vc!r} must be a str column, not "
                             f"{spec.columns[vc].type}")
        if vc == spec.key:
            raise ValueError(f"schema.version_column: {vc!r} is the key column")
    for name, version in schema.versions.items():
        if spec.key not in version.columns:
            raise ValueError(f"schema.versions.{name}.columns: the key {spec.key!r} must be a column of "
                             f"every version (declared: {', '.join(version.columns)})")
    _check_graph(spec)
    for i in range(len(schema.migrations)):
        _check_migration(spec, i)
