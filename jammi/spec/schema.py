"""The `schema:` block of a source: older schema versions and the migrations to the current one.

```yaml
sources:
  partners:
    kind: jsonl
    path: data/partners/*.jsonl
    key: partner_sku
    columns: {...}                        # the current version (v2): everything downstream reads it
    schema:
      current: v2
      version_column: schema_version      # optional; without it the version is inferred from fields
      versions:
        v1: {columns: {...}, deprecated: [old_col]}
      migrations:
        - from: v1
          to: v2
          steps:
            - rename: {from: name, to: title}
            - add: {column: currency, default: USD}
            - cast: {column: price, to: float}
            - split: {column: full_name, into: [first, last], sep: " "}
            - merge: {columns: [street, city], into: address, sep: ", "}
            - drop: {column: old_col}    # only columns the older version declares deprecated
```

The models are generic over the column model so this module does not import `config`
(which imports it); `config.SourceSpec` uses `SchemaSpec[ColumnSpec]`.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from jammi.types import ColumnType

C = TypeVar("C")
CastType = ColumnType
VERSION_PATTERN = r"^[A-Za-z0-9_.-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


def column_shorthand(value: Any) -> Any:
    """`price: float` means `price: {type: float}`, as in a source's `columns`."""
    if isinstance(value, dict):
        return {k: ({"type": v} if isinstance(v, str) else v) for k, v in value.items()}
    return value


class VersionSpec(_Strict, Generic[C]):
    """An older schema version: its columns and those it marks deprecated (droppable)."""

    columns: dict[str, C]
    deprecated: list[str] = []

    @field_validator("columns", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return column_shorthand(value)

    @model_validator(mode="after")
    def _check(self) -> VersionSpec:
        if not self.columns:
            raise ValueError("declare at least one column")
        for col in self.deprecated:
            if col not in self.columns:
                raise ValueError(f"deprecated: {col!r} is not a column of this version "
                                 f"(columns: {', '.join(self.columns)})")
        return self


class Rename(_Strict):
    from_: str = Field(alias="from")
    to: str


class Add(_Strict):
    column: str
    default: Any = None


class Cast(_Strict):
    column: str
    to: CastType


class Split(_Strict):
    column: str
    into: list[str] = Field(min_length=2)
    sep: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Split:
        if (self.sep is None) == (self.regex is None):
            raise ValueError("split needs exactly one of 'sep' or 'regex'")
        if self.sep == "":
            raise ValueError("split: 'sep' must not be empty")
        if self.regex is not None:
            try:
                groups = re.compile(self.regex).groups
            except re.error as err:
                raise ValueError(f"split: regex {self.regex!r} does not compile: {err}") from None
            if groups != len(self.into):
                raise ValueError(f"split: regex {self.regex!r} has {groups} group(s) but 'into' names "
                                 f"{len(self.into)} column(s)")
        if len(set(self.into)) != len(self.into):
            raise ValueError("split: 'into' names a column twice")
        return self


class Merge(_Strict):
    columns: list[str] = Field(min_length=2)
    into: str
    sep: str = " "


class Drop(_Strict):
    column: str


class RenameStep(_Strict):
    rename: Rename


class AddStep(_Strict):
    add: Add


class CastStep(_Strict):
    cast: Cast


class SplitStep(_Strict):
    split: Split


class MergeStep(_Strict):
    merge: Merge


class DropStep(_Strict):
    drop: Drop


STEP_KINDS = ("rename", "add", "cast", "split", "merge", "drop")


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        keys = list(value)
    elif isinstance(value, BaseModel):
        keys = [k for k in type(value).model_fields if getattr(value, k, None) is not None]
    else:
        return None
    return keys[0] if len(keys) == 1 and keys[0] in STEP_KINDS else None


Step = Annotated[
    Annotated[RenameStep, Tag("rename")]
    | Annotated[AddStep, Tag("add")]
    | Annotated[CastStep, Tag("cast")]
    | Annotated[SplitStep, Tag("split")]
    | Annotated[MergeStep, Tag("merge")]
    | Annotated[DropStep, Tag("drop")],
    Discriminator(
        _step_kind,
        custom_error_type="migration_step",
        custom_error_message=f"a step is a mapping with exactly one of {', '.join(STEP_KINDS)}",
    ),
]


def step_kind(step: BaseModel) -> str:
    return _step_kind(step) or ""


def step_args(step: BaseModel) -> BaseModel:
    return getattr(step, step_kind(step))


class MigrationSpec(_Strict):
    """Steps that turn rows of version `from` into rows of version `to`, applied in order."""

    from_: str = Field(alias="from")
    to: str
    steps: list[Step] = []

    @property
    def label(self) -> str:
        return f"{self.from_}->{self.to}"


class SchemaSpec(_Strict, Generic[C]):
    """Versioned schemas of a source; the current version's columns are the source's `columns`."""

    current: str = Field(pattern=VERSION_PATTERN)
    version_column: str | None = None
    versions: dict[Annotated[str, Field(pattern=VERSION_PATTERN)], VersionSpec[C]] = {}
    migrations: list[MigrationSpec] = []

    @model_validator(mode="after")
    def _check(self) -> SchemaSpec:
        if self.current in self.versions:
            raise ValueError(f"versions: {self.current!r} is the current version, whose columns are the "
                             f"source's top-level `columns`; declare only older versions here")
        return self

    @property
    def names(self) -> list[str]:
        """Every version, oldest first: the older ones in declared order, then the current one."""
        return [*self.versions, self.current]


def migration_path(schema: Any, start: str, end: str) -> list[MigrationSpec] | None:
    """The declared migrations leading from `start` to `end` ([] when equal), or None."""
    previous: dict[str, MigrationSpec | None] = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        if here == end:
            path = []
            while previous[here] is not None:
                path.append(previous[here])
                here = previous[here].from_
            return path[::-1]
        for migration in schema.migrations:
            if migration.from_ == here and migration.to not in previous:
                previous[migration.to] = migration
                queue.append(migration.to)
    return None
