"""One source's validated frame -> standardized entity records.

Each record carries where it came from (`_source`, `_record_id`), when its values were
observed (`_observed_at`, UTC), the source's `_priority` and `_quality`, every entity field in
declared order (null where the source does not map it) and a `_hash` of its values for change
detection. Everything here is column-wise: no Python loop per row except hashing and regex.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from jammi.errors import FusionError
from jammi.fusion.numbers import read_number, read_numbers, suggest_number_fix
from jammi.spec.entities import EntitySourceSpec, EntitySpec, FieldMapping
from jammi.types import FALSE_WORDS, PANDAS_DTYPES, TRUE_WORDS

META_COLUMNS = ["_source", "_record_id", "_observed_at", "_priority", "_quality"]
HASH_COLUMN = "_hash"
OBSERVED_DTYPE = "datetime64[ns, UTC]"
MAX_EXAMPLES = 5
_MAX_GUESSES = 3


def standardize(
    frame: pd.DataFrame,
    source: str,
    contrib: EntitySourceSpec,
    entity: EntitySpec,
    key: str,
    *,
    entity_name: str | None = None,
) -> pd.DataFrame:
    """Standardized records of `entity` from `source`'s validated `frame`.

    `key` is the source's key column, the record id unless `contrib.id` names another column;
    `entity_name` only makes error messages name the entity."""
    label = f"entity {entity_name!r}" if entity_name else _entity_label(entity)
    frame = frame.reset_index(drop=True)
    needed = [contrib.id or key] + ([contrib.timestamp] if contrib.timestamp else []) + [
        col for m in contrib.mapping.values() for col in m.inputs
    ]
    missing = sorted({c for c in needed if c not in frame.columns})
    if missing:
        raise FusionError(
            f"{label}, source {source!r}: column(s) {missing} are not in the source's frame "
            f"(columns: {', '.join(map(str, frame.columns))}); fix the entity's mapping in jammi.yaml"
        )
    record_ids = _record_ids(frame[contrib.id or key], source, contrib.id or key, label)
    out: dict[str, pd.Series] = {
        "_source": pd.Series(source, index=frame.index, dtype="string"),
        "_record_id": record_ids,
        "_observed_at": _observed_at(frame, source, contrib.timestamp, record_ids, label),
        "_priority": pd.Series(contrib.priority, index=frame.index, dtype="int64"),
        "_quality": pd.Series(float(contrib.quality), index=frame.index, dtype="float64"),
    }
    for field, ftype in entity.fields.items():
        mapping = contrib.mapping.get(field)
        if mapping is None:
            out[field] = _nulls(len(frame), ftype)
            continue
        raw = _mapped_input(frame, mapping)
        typed = _cast(raw, mapping.cast or ftype, source, field, record_ids, mapping)
        if mapping.cast and mapping.cast != ftype:
            typed = _cast(typed, ftype, source, field, record_ids, mapping)
        out[field] = typed
    records = pd.DataFrame(out)
    records[HASH_COLUMN] = record_hashes(records, entity)
    return records


def record_hashes(records: pd.DataFrame, entity: EntitySpec) -> pd.Series:
    """blake2b of each record's field values and observation time, for change detection."""
    parts = [_hash_text(records[f], t) for f, t in entity.fields.items()]
    parts.append(_hash_text(records["_observed_at"], "datetime"))
    joined = parts[0].str.cat(parts[1:], sep="\x1f", na_rep="\x00")
    digests = [hashlib.blake2b(t.encode("utf-8"), digest_size=16).hexdigest() for t in joined]
    return pd.Series(digests, index=records.index, dtype="string")


def text_form(values: pd.Series) -> pd.Series:
    """Each value's string form as a `string` Series (null stays null)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        out = values.astype("string")
    elif isinstance(values.dtype, pd.StringDtype):
        out = values
    else:
        out = values.astype(object).where(values.notna(), None).astype("string")
    return out


def _entity_label(entity: EntitySpec) -> str:
    if entity.id:
        return f"entity with id column {entity.id!r}"
    return f"entity with fields {', '.join(entity.fields)}"


def _examples(record_ids: pd.Series, values: pd.Series, bad: pd.Series) -> str:
    count = int(bad.sum())
    ids, vals = record_ids[bad].head(MAX_EXAMPLES).tolist(), values[bad].head(MAX_EXAMPLES).tolist()
    shown = [f"record {rid!r}: {val!r}" for rid, val in zip(ids, vals, strict=True)]
    more = f" and {count - MAX_EXAMPLES} more" if count > MAX_EXAMPLES else ""
    return f"{count} value(s) (" + "; ".join(shown) + more + ")"


def _record_ids(values: pd.Series, source: str, column: str, label: str) -> pd.Series:
    ids = _blank_to_null(text_form(values))
    if ids.isna().any():
        rows = np.flatnonzero(ids.isna().to_numpy())[:MAX_EXAMPLES].tolist()
        raise FusionError(
            f"{label}, source {source!r}: record id column {column!r} is null in "
            f"{int(ids.isna().sum())} row(s) (row positions {rows}); every record needs an id"
        )
    return ids


def _observed_at(
    frame: pd.DataFrame, source: str, column: str | None, record_ids: pd.Series, label: str
) -> pd.Series:
    if column is None:
        return pd.Series(pd.NaT, index=frame.index, dtype=OBSERVED_DTYPE)
    values = frame[column]
    parsed, bad = _to_utc(values)
    if bad.any():
        raise FusionError(
            f"{label}, source {source!r}: timestamp column {column!r} cannot be parsed as a time in "
            f"{_examples(record_ids, values, bad)}; fix the values or name another `timestamp` column"
        )
    return parsed


def _to_utc(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Values as UTC timestamps (naive ones are taken as UTC) and a mask of unparseable ones."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype(OBSERVED_DTYPE), pd.Series(False, index=values.index)
    if pd.api.types.is_datetime64_dtype(values):
        return values.dt.tz_localize("UTC").astype(OBSERVED_DTYPE), pd.Series(False, index=values.index)
    text = _blank_to_null(text_form(values))
    raw = text.astype(object).where(text.notna(), None).to_numpy()
    stamps = _utc_ns(raw, "ISO8601")
    retry = np.flatnonzero(text.notna().to_numpy() & np.isnat(stamps))
    for _ in range(_MAX_GUESSES):  # other layouts: guess one from a failing value, parse in bulk
        layout = guess_datetime_format(str(raw[retry[0]])) if len(retry) else None
        if layout is None:
            break
        stamps[retry] = _utc_ns(raw[retry], layout)
        still = retry[np.isnat(stamps[retry])]
        if len(still) == len(retry):
            break
        retry = still
    if len(retry):  # whatever is left parses value by value: each distinct string once
        distinct, inverse = np.unique(raw[retry].astype(str), return_inverse=True)
        stamps[retry] = _utc_ns(distinct.astype(object), "mixed")[inverse]
    parsed = pd.Series(stamps, index=values.index).dt.tz_localize("UTC").astype(OBSERVED_DTYPE)
    bad = (text.notna() & parsed.isna()).astype(bool)
    return parsed, bad


def _utc_ns(raw: np.ndarray, layout: str) -> np.ndarray:
    """Strings parsed with `layout` as naive UTC datetime64[ns]; NaT where they do not parse."""
    parsed = pd.to_datetime(pd.Series(raw, dtype=object), errors="coerce", utc=True, format=layout)
    return parsed.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").copy()


def _blank_to_null(text: pd.Series) -> pd.Series:
    blank = text.str.strip().eq("").fillna(False).astype(bool)
    return text.mask(blank) if blank.any() else text


def _nulls(n: int, ftype: str) -> pd.Series:
    return pd.Series([None] * n, dtype=PANDAS_DTYPES[ftype])


def _mapped_input(frame: pd.DataFrame, mapping: FieldMapping) -> pd.Series:
    if mapping.column is not None:
        raw = frame[mapping.column]
    else:
        parts = [_blank_to_null(text_form(frame[c])) for c in mapping.inputs]
        raw = parts[0]
        for part in parts[1:]:
            joined = raw + mapping.sep + part
            raw = joined.where(raw.notna() & part.notna(), raw.fillna(part))
    if mapping.regex is not None:
        raw = _extract(_blank_to_null(text_form(raw)), mapping.regex, mapping.join)
    return raw


def _extract(text: pd.Series, pattern: str, join: str = "") -> pd.Series:
    """The whole match of a pattern without groups; else the groups that matched, joined by
    `join` (`\\$(\\d+),(\\d+)` reads "$1,999" as "1999")."""
    rx = re.compile(pattern)
    uniques = text.dropna().unique()
    found = {}
    for value in uniques:
        match = rx.search(value)
        if match is None:
            found[value] = None
        elif not rx.groups:
            found[value] = match.group(0)
        else:
            parts = [g for g in match.groups() if g is not None]
            found[value] = join.join(parts) if parts else None
    return text.map(found).astype("string")


def _cast(values: pd.Series, ftype: str, source: str, field: str, record_ids: pd.Series,
          mapping: FieldMapping | None = None) -> pd.Series:
    if ftype == "str":
        return _blank_to_null(text_form(values))
    if ftype in ("datetime", "date"):
        typed, bad = _to_utc(values)
        typed = typed.dt.tz_convert(None).astype("datetime64[ns]")
        if ftype == "date":
            typed = typed.dt.normalize()
    elif ftype == "bool":
        typed, bad = _to_bool(values)
    else:
        typed, bad = _to_number(values, ftype, mapping.locale if mapping else None)
    if bad.any():
        raise FusionError(
            f"source {source!r}, field {field!r}: {_examples(record_ids, values, bad)} cannot be read "
            f"as {ftype}; {_fix(values[bad], ftype, mapping)}"
        )
    return typed


def _fix(bad: pd.Series, ftype: str, mapping: FieldMapping | None) -> str:
    """What would read the `bad` values: checked against them for numbers, never `cast` when the
    mapping already casts."""
    if ftype in ("int", "float"):
        text = text_form(bad).dropna().str.strip().tolist()
        if ftype == "int" and all(read_number(v, mapping.locale if mapping else None) is not None
                                  for v in text):
            return "they have decimals: declare the entity field (or the mapping's `cast`) `float`"
        return suggest_number_fix(text, mapping.locale if mapping else None)
    drop = " and drop the mapping's `cast`" if mapping is not None and mapping.cast else ""
    return f"fix the values, or declare the field `str`{drop} to keep them as text"


def _to_number(values: pd.Series, ftype: str, locale: str | None = None) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_bool_dtype(values):
        values = values.astype("Int64")
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.astype("Float64")
        present = values.notna()
    else:
        text = _blank_to_null(text_form(values))
        present = text.notna()
        if locale is not None:  # "1.999" is 1999 in de_DE: every value is read the locale's way
            numbers = read_numbers(text, locale)
        else:
            numbers = pd.to_numeric(text.astype(object).where(present, None), errors="coerce")
            numbers = numbers.astype("Float64")
            retry = present & numbers.isna()
            if retry.any():  # "$1,999.00", "1,200 usd": currency and thousands separators
                numbers = numbers.mask(retry, read_numbers(text[retry]))
    bad = present & numbers.isna()
    if ftype == "int":
        bad |= (numbers % 1).ne(0).fillna(False)
        bad = bad.astype(bool)
        return numbers.where(~bad).astype("Int64"), bad
    return numbers, bad.astype(bool)


def _to_bool(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_bool_dtype(values):
        return values.astype("boolean"), pd.Series(False, index=values.index)
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.astype("Float64")
        bad = (numbers.notna() & ~numbers.isin([0, 1])).fillna(False).astype(bool)
        return numbers.eq(1).astype("boolean").mask(bad), bad
    text = _blank_to_null(text_form(values))
    norm = text.str.strip().str.casefold()
    truthy = norm.isin(TRUE_WORDS).fillna(False).astype(bool)
    falsy = norm.isin(FALSE_WORDS).fillna(False).astype(bool)
    bad = (text.notna() & ~truthy & ~falsy).astype(bool)
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[truthy.to_numpy()] = True
    out[falsy.to_numpy()] = False
    return out, bad


def _hash_text(values: pd.Series, ftype: str) -> pd.Series:
    if ftype not in ("datetime", "date"):
        return text_form(values)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert(None)
    elif not pd.api.types.is_datetime64_dtype(values):
        values = _to_utc(values)[0].dt.tz_convert(None)
    stamps = values.astype("datetime64[ns]")
    ns = pd.Series(stamps.to_numpy().view("int64"), index=values.index).astype("string")
    return ns.mask(stamps.isna())
