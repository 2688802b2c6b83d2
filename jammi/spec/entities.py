"""The `entities:` block of jammi.yaml: a canonical schema per entity, how each contributing
source maps onto it, how records are linked and how conflicting values are resolved.

```yaml
entities:
  customer:
    id: customer_id                       # name of the fused id column
    fields: {name: str, email: str, city: str, lifetime_value: float}
    link_keys: [email]                    # equal values link records (shared or cross-walked keys)
    sources:
      crm:
        priority: 1                       # lower wins under the `priority` rule
        quality: 0.9                      # weight under `highest_quality` and `vote`
        timestamp: updated_at             # when the row's values were observed
        mapping:
          name: {concat: [first_name, last_name]}
          email: contact_email            # a plain column name renames
          lifetime_value: {column: ltv, cast: float}
      partner:
        priority: 2
        mapping:
          name: full_name
          city: {column: address, regex: ",\\s*([^,]+)$"}
    resolution:
      default: [priority, most_recent]    # tie-breaker chain, left to right
      email: [most_recent, priority]
    matching: {fields: {name: text, city: exact}, embed: [name, city]}
```
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from babel import Locale, UnknownLocaleError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jammi.types import ColumnType

FieldType = ColumnType
Rule = Literal["priority", "most_recent", "highest_quality", "most_complete", "longest", "vote"]
Comparator = Literal["text", "name", "code", "number", "year", "exact"]
RULES: tuple[str, ...] = Rule.__args__  # type: ignore[attr-defined]
DEFAULT_CHAIN: tuple[str, ...] = ("priority", "most_recent")
ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class FieldMapping(_Strict):
    """How one entity field is computed from a source row: a column (renamed), or columns
    concatenated with `sep`; optionally a regex extract (the whole match when the pattern has no
    group, else its groups that matched, joined by `join`) and a cast (default: the entity
    field's type). Numbers may carry currency signs or codes and thousands separators
    (`$1,999.00`); `locale` (e.g. `de_DE`) says which marks group and which mark decimals
    (`1.999,00 €`); see jammi/fusion/numbers.py."""

    column: str | None = None
    concat: list[str] | None = Field(default=None, min_length=1)
    sep: str = " "
    regex: str | None = None
    join: str = ""
    cast: FieldType | None = None
    locale: str | None = None

    @model_validator(mode="after")
    def _one_input(self) -> FieldMapping:
        if (self.column is None) == (self.concat is None):
            raise ValueError("give exactly one of `column` or `concat`")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as err:
                raise ValueError(f"regex {self.regex!r} does not compile: {err}") from None
        if self.locale is not None:
            try:
                Locale.parse(self.locale)
            except (UnknownLocaleError, ValueError, TypeError):
                raise ValueError(f"locale {self.locale!r} is not a known locale; use a name such as "
                                 "'de_DE' or 'en_US'") from None
        return self

    @property
    def inputs(self) -> list[str]:
        return [self.column] if self.column is not None else list(self.concat or [])


class EntitySourceSpec(_Strict):
    """One source's contribution to an entity."""

    mapping: dict[str, FieldMapping] = Field(min_length=1)
    priority: int = Field(default=100, ge=0)
    quality: float = Field(default=1.0, gt=0, le=1)
    timestamp: str | None = None
    id: str | None = None  # the record id column; default: the source's key

    @field_validator("mapping", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({"column": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value


class MatchingSpec(_Strict):
    """Linking records that share no key: blocking, pairwise scoring, threshold, clusters."""

    enabled: bool = True
    fields: dict[str, Comparator] = {}  # compared field -> comparator; default: str fields as `text`
    embed: list[str] = []  # fields joined into the blocking text; default: the compared str fields
    model: str | None = None  # default: the project default model
    candidates: int = Field(default=20, ge=1, le=200)
    threshold: float | None = Field(default=None, ge=0, le=1)  # None: the automatic rule
    auto_threshold: Literal["otsu", "mixture"] = "otsu"  # the automatic rule (threshold.py)
    mutual_best: bool = True  # a pair each side's best is linked unless the scores contradict it
    # `learned`: the comparators' and cosine's mean, each weighted by what EM finds it says
    # (weights.py, matching.learn); `fellegi_sunter`: the EM model's match probability; `fields`:
    # the hand-weighted mean (scoring.py); `cosine`: the embedding cosine alone
    scoring: Literal["learned", "fellegi_sunter", "fields", "cosine"] = "learned"
    max_cluster_size: int = Field(default=0, ge=0)  # 0: one record per source per entity
    duplicates: bool = False  # a record may join its linked twin's entity (matching.py)


class FusedQualitySpec(_Strict):
    """Checks on the fused entity (jammi/quality/fused_checks.py). `max_conflict_rate`: per
    field, at most this share of the entities with several candidate values may disagree (more
    means the links join different things, or the sources map different things onto the
    field). A mapping gives a limit per field, `default` for the rest: `{default: 0.5, title: 1}`
    for a free-text field each source words its own way. `min_coverage`: per source, at least
    this share of the entities it contributes to must also come from another source (less means
    the source is not being fused). `min_label_f1`: F1 of the matcher on the pairs people labelled,
each scored before its own answer was used (they are the pairs it was least sure of, so a low
bar)."""

    DEFAULT_CONFLICT_RATE: ClassVar[float] = 0.5
    max_conflict_rate: float | dict[str, float] = DEFAULT_CONFLICT_RATE
    min_coverage: float = Field(default=0.05, ge=0, le=1)
    max_cluster_size: int = Field(default=50, ge=1)
    min_label_f1: float = Field(default=0.5, ge=0, le=1)  # on labelled pairs, scored held out
    severity: Literal["warn", "error"] = "warn"

    @field_validator("max_conflict_rate")
    @classmethod
    def _rates(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        for name, rate in (value.items() if isinstance(value, dict) else [("", value)]):
            if not 0 <= rate <= 1:
                where = f" for {name!r}" if name else ""
                raise ValueError(f"max_conflict_rate{where} must be within [0, 1], got {rate}")
        return value

    def conflict_limit(self, field: str) -> float:
        """The highest conflict rate `field` may show."""
        rates = self.max_conflict_rate
        if not isinstance(rates, dict):
            return float(rates)
        return float(rates.get(field, rates.get("default", FusedQualitySpec.DEFAULT_CONFLICT_RATE)))


class EntitySpec(_Strict):
    id: str | None = Field(default=None, pattern=ID_PATTERN)  # default: <entity>_id
    fields: dict[str, FieldType] = Field(min_length=1)
    sources: dict[str, EntitySourceSpec]
    link_keys: list[str] = []
    resolution: dict[str, list[Rule]] = {}
    matching: MatchingSpec = MatchingSpec()
    quality: FusedQualitySpec = FusedQualitySpec()

    @field_validator("resolution", mode="before")
    @classmethod
    def _chains(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ([v] if isinstance(v, str) else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check(self) -> EntitySpec:
        if not self.sources:
            raise ValueError("an entity needs at least one source under `sources`")
        declared = ", ".join(self.fields)
        for name, src in self.sources.items():
            for target in src.mapping:
                if target not in self.fields:
                    raise ValueError(
                        f"sources.{name}.mapping: {target!r} is not a field of the entity "
                        f"(fields: {declared})"
                    )
        for key in self.link_keys:
            if key not in self.fields:
                raise ValueError(f"link_keys: {key!r} is not a field of the entity (fields: {declared})")
        for target in self.resolution:
            if target != "default" and target not in self.fields:
                raise ValueError(f"resolution: {target!r} is not a field of the entity (fields: {declared})")
        rates = self.quality.max_conflict_rate
        for target in rates if isinstance(rates, dict) else []:
            if target != "default" and target not in self.fields:
                raise ValueError(f"quality.max_conflict_rate: {target!r} is not a field of the entity "
                                 f"(fields: {declared})")
        for target in list(self.matching.fields) + list(self.matching.embed):
            if target not in self.fields:
                raise ValueError(
                    f"matching: {target!r} is not a field of the entity (fields: {declared})"
                )
        if self.id is not None and self.id in self.fields:
            raise ValueError(f"id: {self.id!r} clashes with a field of the same name")
        return self

    def id_column(self, entity: str) -> str:
        return self.id or f"{entity}_id"

    def chain(self, field: str) -> list[str]:
        return list(self.resolution.get(field) or self.resolution.get("default") or DEFAULT_CHAIN)

    def compared_fields(self) -> dict[str, str]:
        if self.matching.fields:
            return dict(self.matching.fields)
        return {f: "text" for f, t in self.fields.items() if t == "str" and f not in self.link_keys}

    def embed_fields(self) -> list[str]:
        return list(self.matching.embed) or [f for f, c in self.compared_fields().items()
                                             if self.fields[f] == "str"]
