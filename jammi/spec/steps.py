"""The six migration steps, each applied two ways: to a schema (column name -> type and
nullability, checked at load) and to the rows of a frame (at validation or in a backfill).

Row semantics:
- rename: the column takes the new name, values unchanged.
- add: a new column holding `default` in every row (null when no default is given).
- cast: each value converted to the type (`"12.5"` -> 12.5, `"yes"` -> True); a value that
  cannot be converted is left as it is, so validation quarantines its row with the value.
- split: by `sep`, at most len(into) parts, the last part keeping the rest of the text and
  missing parts null; by `regex`, group i goes to into[i] and a value the regex does not
  match fails its row (it is quarantined, not silently emptied). The split column is removed
  unless it is one of `into`.
- merge: the non-null values joined with `sep` (null when all are null); the merged columns
  are removed unless one of them is `into`.
- drop: the column is removed (load refuses it unless the older version declares it deprecated).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jammi.spec.schema import MigrationSpec, step_args, step_kind
from jammi.types import coerce_value, is_missing

if TYPE_CHECKING:  # the row functions import it: loading a project (schemas only) needs no pandas
    import pandas as pd


@dataclass(frozen=True)
class Col:
    """A column as far as compatibility goes; `origin` says how a migration produced it."""

    type: str
    nullable: bool = True
    origin: str | None = None


def _text(value: Any) -> str:
    return coerce_value(value, "str")[1]


# --- schemas ---------------------------------------------------------------------------


def _guards(out: dict[str, Col], at: str, kind: str, version: str, protected: dict[str, str]):
    """Checks for one step: a column must exist, must not exist yet, must not be key/version."""

    def need(col: str) -> None:
        if col not in out:
            raise ValueError(f"{at}: unknown column {col!r} (columns of {version} at this step: "
                             f"{', '.join(out)})")

    def free(col: str) -> None:
        if col in out:
            raise ValueError(f"{at}: column {col!r} already exists at this step")

    def keep(col: str) -> None:
        if col in protected:
            raise ValueError(f"{at}: {col!r} is the {protected[col]}; a {kind} step cannot touch it")

    return need, free, keep


def apply_to_schema(
    fields: dict[str, Col], migration: MigrationSpec, *, deprecated: list[str], target: dict[str, Any],
    protected: dict[str, str], where: str,
) -> dict[str, Col]:
    """The columns after `migration`'s steps; ValueError naming the step for a bad reference.

    `target` holds the newer version's columns (for an added column's type), `protected`
    maps the key and version column to what they are (no step may move or remove them).
    """
    out = dict(fields)
    for j, step in enumerate(migration.steps):
        kind, args = step_kind(step), step_args(step)
        at = f"{where}.steps[{j}].{kind}"
        need, free, keep = _guards(out, at, kind, migration.from_, protected)
        if kind == "rename":
            need(args.from_), keep(args.from_), free(args.to)
            out = {(args.to if c == args.from_ else c): (
                Col(v.type, v.nullable, f"renamed from {args.from_}") if c == args.from_ else v)
                for c, v in out.items()}
        elif kind == "add":
            free(args.column)
            typ = target[args.column].type if args.column in target else "str"
            if not coerce_value(args.default, typ)[0]:
                raise ValueError(f"{at}: default {args.default!r} is not a {typ} (the type of "
                                 f"{args.column!r} in {migration.to})")
            out[args.column] = Col(typ, args.default is None, f"added with default {args.default!r}")
        elif kind == "cast":
            need(args.column)
            old = out[args.column]
            out[args.column] = Col(args.to, old.nullable, f"cast from {old.type}")
        elif kind == "split":
            need(args.column), keep(args.column)
            for col in args.into:
                if col != args.column:
                    free(col)
            out.pop(args.column)
            out.update({c: Col("str", True, f"split from {args.column}") for c in args.into})
        elif kind == "merge":
            for col in args.columns:
                need(col), keep(col)
            if args.into not in args.columns:
                free(args.into)
            nullable = all(out[c].nullable for c in args.columns)
            for col in args.columns:
                out.pop(col)
            out[args.into] = Col("str", nullable, f"merged from {', '.join(args.columns)}")
        else:
            need(args.column), keep(args.column)
            if args.column not in deprecated:
                raise ValueError(
                    f"{at}: {args.column!r} is not declared deprecated in {migration.from_}; drop only "
                    f"removes deprecated columns (add it to versions.{migration.from_}.deprecated, or "
                    f"rename/merge it into a column of {migration.to})"
                )
            out.pop(args.column)
    return out


# --- rows ------------------------------------------------------------------------------


def _split(frame: pd.DataFrame, args: Any, failures: dict[Any, str], label: str) -> pd.DataFrame:
    import pandas as pd

    parts: dict[str, list] = {c: [] for c in args.into}
    for idx, value in frame[args.column].items():
        pieces: list = []
        if not is_missing(value):
            text = _text(value)
            if args.sep is not None:
                pieces = text.split(args.sep, len(args.into) - 1)
            else:
                match = re.search(args.regex, text)
                if match is None:
                    failures.setdefault(idx, f"migration {label}: split of {args.column}: value "
                                             f"{value!r} does not match regex {args.regex!r}")
                else:
                    pieces = list(match.groups())
        pieces += [None] * (len(args.into) - len(pieces))
        for col, piece in zip(args.into, pieces, strict=True):
            parts[col].append(piece)
    out = frame.drop(columns=[args.column])
    for col in args.into:
        out[col] = pd.Series(parts[col], index=frame.index, dtype=object)
    return out


def _merge(frame: pd.DataFrame, args: Any) -> pd.DataFrame:
    import pandas as pd

    rows = frame[args.columns].astype(object).itertuples(index=False, name=None)
    merged = []
    for row in rows:
        values = [_text(v) for v in row if not is_missing(v)]
        merged.append(args.sep.join(values) if values else None)
    out = frame.drop(columns=args.columns)
    out[args.into] = pd.Series(merged, index=frame.index, dtype=object)
    return out


def apply_to_frame(frame: pd.DataFrame, migration: MigrationSpec) -> tuple[pd.DataFrame, dict[Any, str]]:
    """Rows of `migration.from_` turned into rows of `migration.to` (same index), and the rows
    a step could not migrate (index -> reason). The input frame is never modified."""
    import pandas as pd

    out = frame.copy()
    failures: dict[Any, str] = {}
    for step in migration.steps:
        kind, args = step_kind(step), step_args(step)
        if kind == "rename":
            out = out.rename(columns={args.from_: args.to})
        elif kind == "add":
            out[args.column] = pd.Series([args.default] * len(out), index=out.index, dtype=object)
        elif kind == "cast":
            out[args.column] = pd.Series([coerce_value(v, args.to)[1] for v in out[args.column]],
                                         index=out.index, dtype=object)
        elif kind == "split":
            out = _split(out, args, failures, migration.label)
        elif kind == "merge":
            out = _merge(out, args)
        else:
            out = out.drop(columns=[args.column])
    return out, failures
