"""Conflict resolution: one value per entity and field, with the record and rule that decided it.

For each field, the non-null values of an entity's records are its candidates. The field's
rule chain runs left to right; each rule keeps only the candidates tied at that rule's best
value. The rule credited in provenance is the first after which a single distinct value is
left (`only_value` for a single candidate, `agreed` when several candidates gave one value);
when the chain ends with several
values, the fallback order (lowest priority number, then source name, then record id) picks
one and the rule is `tie_break`. The same fallback picks the winning record among the
remaining candidates that hold the winning value. Text values that differ only in case or
whitespace ("ACME  Corp" and "acme corp") are one value for `agreed` and are no `conflict`; the
chain still picks which spelling is kept.

All of it is array work over a long (entity, candidate) table per field: no loop per entity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jammi.errors import FusionError
from jammi.fusion.mapping import META_COLUMNS, OBSERVED_DTYPE, text_form
from jammi.spec.entities import EntitySpec
from jammi.types import PANDAS_DTYPES

ONLY_VALUE = "only_value"
AGREED = "agreed"
TIE_BREAK = "tie_break"
PROVENANCE_COLUMNS = ["field", "value", "source", "record_id", "observed_at", "rule", "candidates",
                      "conflict"]
_VOTE_DECIMALS = 9  # weight sums are compared after rounding, so 0.1 + 0.2 ties with 0.3


class _Records:
    """Per-record arrays shared by every field."""

    def __init__(self, records: pd.DataFrame, entity: EntitySpec):
        self.source = records["_source"].astype(str).to_numpy(dtype=object)
        self.record_id = records["_record_id"].astype(str).to_numpy(dtype=object)
        self.priority = records["_priority"].to_numpy(dtype=np.int64)
        self.quality = records["_quality"].to_numpy(dtype=np.float64)
        self.observed = _utc(records["_observed_at"])
        ns = self.observed.to_numpy(dtype="datetime64[ns]").view(np.int64)
        oldest = np.iinfo(np.int64).min + 1
        self.observed_ns = np.where(self.observed.isna().to_numpy(), oldest, ns)  # NaT counts as oldest
        self.complete = records[list(entity.fields)].notna().sum(axis=1).to_numpy(dtype=np.int64)
        src_code = pd.factorize(self.source, sort=True)[0]
        rid_code = pd.factorize(self.record_id, sort=True)[0]
        self.fallback = np.empty(len(records), dtype=np.int64)
        self.fallback[np.lexsort((rid_code, src_code, self.priority))] = np.arange(len(records))


def resolve(
    records: pd.DataFrame, entity_ids: pd.Series, entity: EntitySpec, id_column: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fused, provenance) for the standardized `records`, grouped by `entity_ids`.

    fused: one row per entity, sorted by id: `id_column`, each field's winning value,
    `_sources` (distinct sources, sorted, comma-joined) and `_record_count`.
    provenance: one row per entity and field with at least one non-null candidate: the winning
    `value` as text, its `source`, `record_id` and `observed_at`, the deciding `rule`, the number
    of `candidates` and whether they disagreed (`conflict`)."""
    missing = [c for c in META_COLUMNS + list(entity.fields) if c not in records.columns]
    if missing:
        raise FusionError(f"resolve: records lack column(s) {missing}; pass standardized records")
    ids = _aligned_ids(records, entity_ids)
    codes, uniques = pd.factorize(ids, sort=True)
    n_ent = len(uniques)
    rec = _Records(records, entity)

    fused: dict[str, pd.Series | np.ndarray] = {id_column: pd.array(uniques, dtype="string")}
    provenance = []
    for field in sorted(entity.fields, key=str):
        ftype = entity.fields[field]
        typed = _typed(records[field], ftype)
        column = pd.Series([None] * n_ent, dtype=PANDAS_DTYPES[ftype])
        present = np.flatnonzero(typed.notna().to_numpy())
        if len(present):
            decided = _resolve_field(typed, ftype, present, codes[present], n_ent, entity.chain(field), rec)
            win_ent, win_row, rule, candidates, conflict = decided
            column.iloc[win_ent] = typed.iloc[win_row].to_numpy()
            provenance.append(pd.DataFrame({
                "_e": win_ent,
                "field": field,
                "value": _display(typed.iloc[win_row], ftype).to_numpy(),
                "source": rec.source[win_row],
                "record_id": rec.record_id[win_row],
                "observed_at": rec.observed.iloc[win_row].reset_index(drop=True),
                "rule": rule,
                "candidates": candidates,
                "conflict": conflict,
            }))
        fused[field] = column
    for field in entity.fields:  # declared order in the output
        fused[field] = fused.pop(field)
    fused["_sources"] = pd.array(_source_lists(codes, rec.source, n_ent), dtype="string")
    fused["_record_count"] = np.bincount(codes, minlength=n_ent).astype(np.int64)
    return pd.DataFrame(fused), _provenance_frame(provenance, uniques, id_column)


def _aligned_ids(records: pd.DataFrame, entity_ids: pd.Series) -> np.ndarray:
    if len(entity_ids) != len(records):
        raise FusionError(f"resolve: {len(entity_ids)} entity ids for {len(records)} records")
    if isinstance(entity_ids, pd.Series) and not entity_ids.index.equals(records.index):
        entity_ids = entity_ids.reindex(records.index)
    ids = pd.Series(entity_ids).astype(object)
    if ids.isna().any():
        raise FusionError(f"resolve: {int(ids.isna().sum())} record(s) have no entity id")
    return ids.astype(str).to_numpy(dtype=object)


def _resolve_field(
    typed: pd.Series, ftype: str, rows: np.ndarray, ent: np.ndarray, n_ent: int, chain: list[str],
    rec: _Records,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Winner per entity: (entities, winning rows, rules, candidate counts, conflict flags)."""
    values = typed.iloc[rows]
    value_id = pd.factorize(values)[0].astype(np.int64)
    candidates = np.bincount(ent, minlength=n_ent)
    same = _distinct(ent, pd.factorize(_compared(values, ftype))[0].astype(np.int64), n_ent) == 1
    rule = np.where(same, np.where(candidates > 1, AGREED, ONLY_VALUE), "").astype(object)
    conflict = ~same & (candidates > 1)
    alive = np.ones(len(rows), dtype=bool)
    cache: dict[str, np.ndarray] = {}
    for name in chain:
        keep = np.flatnonzero(alive)
        key = _rule_key(name, values, ftype, rows, ent, keep, rec, cache)
        best = _group_min(ent[keep], key, n_ent)
        alive[keep[key != best[ent[keep]]]] = False
        now = _distinct(ent[alive], value_id[alive], n_ent)
        rule[(rule == "") & (now == 1)] = name
    keep = np.flatnonzero(alive)
    order = keep[np.lexsort((rec.fallback[rows[keep]], ent[keep]))]
    first = np.r_[True, ent[order][1:] != ent[order][:-1]]
    win = order[first]
    win_ent = ent[win]
    rule[(rule == "") & (candidates > 0)] = TIE_BREAK
    return (win_ent, rows[win], rule[win_ent], candidates[win_ent].astype(np.int64),
            conflict[win_ent].astype(bool))


def _compared(values: pd.Series, ftype: str) -> pd.Series:
    """Values as compared for agreement: text casefolded with whitespace collapsed."""
    if ftype != "str":
        return values
    return text_form(values).str.split().str.join(" ").str.casefold()


def _rule_key(
    name: str, values: pd.Series, ftype: str, rows: np.ndarray, ent: np.ndarray, keep: np.ndarray,
    rec: _Records, cache: dict[str, np.ndarray],
) -> np.ndarray:
    """Sort key of the live candidates `keep` under rule `name`: lower is better."""
    at = rows[keep]
    if name == "priority":
        return rec.priority[at]
    if name == "most_recent":
        return -rec.observed_ns[at]
    if name == "highest_quality":
        return -rec.quality[at]
    if name == "most_complete":
        return -rec.complete[at]
    if name == "longest":
        if "length" not in cache:
            cache["length"] = text_form(values).str.len().to_numpy(dtype=np.int64)
        return -cache["length"][keep]
    if name == "vote":
        if "vote" not in cache:
            text = text_form(values)
            if ftype == "str":
                text = text.str.casefold().str.strip()
            cache["vote"] = pd.factorize(text)[0].astype(np.int64)
        pair = pd.factorize(ent[keep] * (int(cache["vote"].max()) + 1) + cache["vote"][keep])[0]
        weight = np.round(np.bincount(pair, weights=rec.quality[at]), _VOTE_DECIMALS)
        return -weight[pair]
    raise FusionError(f"resolve: unknown rule {name!r}")


def _group_min(groups: np.ndarray, key: np.ndarray, n: int) -> np.ndarray:
    if key.dtype.kind == "f":
        best = np.full(n, np.inf)
    else:
        best = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, groups, key)
    return best


def _distinct(ent: np.ndarray, value_id: np.ndarray, n_ent: int) -> np.ndarray:
    """Number of distinct values per entity."""
    if not len(ent):
        return np.zeros(n_ent, dtype=np.int64)
    pairs = np.unique(ent * (int(value_id.max()) + 1) + value_id)
    return np.bincount(pairs // (int(value_id.max()) + 1), minlength=n_ent)


def _source_lists(codes: np.ndarray, source: np.ndarray, n_ent: int) -> np.ndarray:
    names, src_code = np.unique(source.astype(str), return_inverse=True)
    has = np.zeros((n_ent, len(names)), dtype=bool)
    has[codes, src_code] = True
    out = np.full(n_ent, "", dtype=object)
    for j, name in enumerate(names):
        out = np.where(has[:, j], np.where(out == "", name, out + "," + name), out)
    return out


def _typed(values: pd.Series, ftype: str) -> pd.Series:
    values = values.reset_index(drop=True)
    if ftype in ("datetime", "date") and isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert(None)
    return values.astype(PANDAS_DTYPES[ftype])


def _utc(values: pd.Series) -> pd.Series:
    values = values.reset_index(drop=True)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype(OBSERVED_DTYPE)
    return pd.to_datetime(values, utc=True).astype(OBSERVED_DTYPE)


def _display(values: pd.Series, ftype: str) -> pd.Series:
    if ftype == "date":
        return values.dt.strftime("%Y-%m-%d").astype("string")
    if ftype == "datetime":
        return pd.Series([v.isoformat() for v in values], index=values.index, dtype="string")
    return text_form(values)


def _provenance_frame(parts: list[pd.DataFrame], uniques: np.ndarray, id_column: str) -> pd.DataFrame:
    empty = pd.DataFrame({
        "_e": pd.Series(dtype=np.int64), "field": pd.Series(dtype=object),
        "value": pd.Series(dtype=object), "source": pd.Series(dtype=object),
        "record_id": pd.Series(dtype=object), "observed_at": pd.Series(dtype=OBSERVED_DTYPE),
        "rule": pd.Series(dtype=object), "candidates": pd.Series(dtype=np.int64),
        "conflict": pd.Series(dtype=bool),
    })
    frame = pd.concat(parts, ignore_index=True) if parts else empty
    frame = frame.sort_values("_e", kind="stable").reset_index(drop=True)  # parts come in field order
    out = pd.DataFrame({id_column: pd.array(np.asarray(uniques, dtype=object)[frame["_e"].to_numpy()],
                                            dtype="string")})
    for col in PROVENANCE_COLUMNS:
        out[col] = frame[col]
    for col in ("field", "value", "source", "record_id", "rule"):
        out[col] = out[col].astype("string")
    return out.astype({"observed_at": OBSERVED_DTYPE, "candidates": np.int64, "conflict": bool})
