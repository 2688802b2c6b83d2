"""Row-level data-quality checks on pandas frames, independent of Dagster.

Every check returns a CheckOutcome. An empty frame always passes with statistic 0.0 and
says so; no check divides by a row count of zero. Values in text columns may be anything
(numbers, bytes, lists): they are turned into text with `str()` rather than crashing.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

import numpy as np
import pandas as pd

from jammi.quality.outcome import MAX_EXAMPLES, CheckOutcome

COMPLETENESS = "completeness"
EXACT_DUPLICATES = "exact_duplicates"
OUTLIERS = "outliers"
SCHEMA_CONFORMANCE = "schema_conformance"
REFERENTIAL_INTEGRITY = "referential_integrity"
DISTRIBUTION_DRIFT = "distribution_drift"

MAD_CONSTANT = 0.6745
IQR_FENCE = 3.0
PSI_BINS = 10
PSI_EPSILON = 1e-4
EXAMPLE_TEXT_CHARS = 80
NO_PREVIOUS = "no previous materialization to compare"
_WS = re.compile(r"\s+")


# --------------------------------------------------------------------------- helpers


def _is_missing(value) -> bool:
    """True for None, NaN, NA, NaT; False for anything else, including lists and arrays."""
    if value is None:
        return True
    try:
        res = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return bool(res) if isinstance(res, bool | np.bool_) else False


def _as_text(value) -> str | None:
    """Text of a cell: None when missing, bytes decoded, anything else through str()."""
    if _is_missing(value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _normalise(text: str | None) -> str:
    if not text:
        return ""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def _json(value):
    """A JSON-able version of one scalar (numpy types unwrapped, NaN -> None)."""
    if _is_missing(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int | bool):
        return value
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _f(value) -> float | None:
    """A finite Python float, or None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _empty(name: str, severity, threshold, what: str = "frame is empty", **details) -> CheckOutcome:
    return CheckOutcome(name, True, severity, 0.0, _f(threshold), f"{what}; nothing to check",
                        [], {"rows": 0, **details})


def _keys_of(df: pd.DataFrame, key: str | None) -> list:
    """JSON-able row keys: the `key` column's values, or the index labels when key is None."""
    if key is None:
        return [_json(v) for v in df.index.tolist()]
    if key not in df.columns:
        raise KeyError(f"key column {key!r} is not in the frame (columns: {list(df.columns)})")
    return [_json(v) for v in df[key].tolist()]


def _all_text(values: pd.Series) -> bool:
    """Every value is text or missing (pandas' type inference, in C): the common case, where
    the per-cell helpers above have vectorized equivalents."""
    return pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")


def _text_series(df: pd.DataFrame, column: str) -> pd.Series:
    values = df[column]
    if _all_text(values):
        return values.astype(object).where(values.notna(), None)
    return pd.Series([_as_text(v) for v in values.tolist()], index=df.index, dtype=object)


def _normalised(texts: pd.Series) -> list[str]:
    """`_normalise` of each text, computed once per distinct text."""
    table = {t: _normalise(t) for t in pd.unique(texts)}
    return [table[t] for t in texts.tolist()]


def _numeric(values) -> np.ndarray:
    """Finite float values of a column or array; anything not numeric is dropped."""
    arr = _numeric_all(values)
    return arr[np.isfinite(arr)]


def _to_float(value) -> float:
    if _is_missing(value) or isinstance(value, str | bytes | bytearray):
        try:
            return float(value) if isinstance(value, str) else np.nan
        except ValueError:
            return np.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _numeric_all(values) -> np.ndarray:
    """Float array, one per cell (NaN where missing or not a number); never raises on odd cells."""
    s = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    try:
        return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        return np.array([_to_float(v) for v in s.tolist()], dtype=float)


def _pct(rate: float) -> str:
    return f"{rate:.2%}"


# --------------------------------------------------------------------------- completeness


def completeness(df: pd.DataFrame, required: list[str], max_null_rate: float, severity) -> CheckOutcome:
    """Per required field, the share of rows that are null or an empty/whitespace-only string.

    A required field absent from the frame counts as wholly missing (rate 1.0).
    """
    n = len(df)
    if n == 0:
        return _empty(COMPLETENESS, severity, max_null_rate)
    rates: dict[str, float] = {}
    counts: dict[str, int] = {}
    for col in required:
        if col not in df.columns:
            counts[col] = n
        elif _all_text(df[col]):
            values = df[col]
            counts[col] = int(values.isna().sum() + (values.dropna().astype(str).str.strip() == "").sum())
        else:
            counts[col] = sum(
                1 for v in df[col].tolist()
                if _is_missing(v)
                or (isinstance(v, str | bytes | bytearray) and not _as_text(v).strip())
            )
        rates[col] = counts[col] / n
    worst = max(rates.values(), default=0.0)
    passed = worst <= max_null_rate
    ordered = sorted((c for c in required if counts[c]), key=lambda c: (-counts[c], c))
    examples = [
        {"field": c, "missing": counts[c], "rate": rates[c],
         **({"absent": True} if c not in df.columns else {})}
        for c in ordered[:MAX_EXAMPLES]
    ]
    if not ordered:
        desc = f"all {len(required)} required fields are filled in all {n} rows"
    else:
        top = ordered[0]
        desc = (f"{len(ordered)} of {len(required)} required fields have missing values; worst "
                f"'{top}' is null/blank in {counts[top]} of {n} rows ({_pct(rates[top])}, "
                f"limit {_pct(max_null_rate)})")
    return CheckOutcome(COMPLETENESS, passed, severity, float(worst), float(max_null_rate), desc,
                        examples, dict(rates))


# --------------------------------------------------------------------------- duplicates


def exact_duplicates(df: pd.DataFrame, key: str, text_columns: list[str], max_rate: float,
                     severity) -> CheckOutcome:
    """(a) keys that occur more than once; (b) the same normalised text under different keys.

    Text is normalised per column (NFKC, casefold, whitespace collapsed, stripped) and
    compared column by column; rows whose text columns are all blank are not compared
    (that is completeness' business). The statistic counts excess rows: every row after
    the first of a repeated key, and every row after the first of a text group that spans
    two or more keys.
    """
    n = len(df)
    if n == 0:
        return _empty(EXACT_DUPLICATES, severity, max_rate)
    keys = pd.Series(_keys_of(df, key), dtype=object)
    df = df.reset_index(drop=True)  # positional labels: a repeated index label must not alias rows
    key_str = keys.map(lambda v: None if v is None else str(v))

    key_known = key_str.notna()
    key_dup_rows = key_known & key_str.duplicated(keep="first")
    key_counts = key_str[key_known].value_counts()
    repeated_keys = key_counts[key_counts > 1]

    text_groups: list[dict] = []
    n_text_groups = 0
    text_dup_rows = pd.Series(False, index=df.index)
    if text_columns:
        norm = pd.DataFrame({i: _normalised(_text_series(df, c))
                             for i, c in enumerate(text_columns)}, index=df.index)
        cols = list(norm.columns)
        candidate = (norm != "").any(axis=1) & norm.duplicated(keep=False)
        if candidate.any():
            cand = norm[candidate]
            group = cand.groupby(cols, sort=False).ngroup()
            frame = pd.DataFrame({"group": group, "key": key_str[candidate].fillna("<null>")})
            spread = frame.groupby("group")["key"].transform("nunique")
            multi = spread >= 2
            text_dup_rows.loc[frame.index[multi & frame["group"].duplicated(keep="first")]] = True
            sizes = frame.loc[multi, "group"].value_counts()
            n_text_groups = int(len(sizes))
            for g in sizes.index[:MAX_EXAMPLES]:
                rows = frame.index[frame["group"] == g]
                text_groups.append({
                    "text": " | ".join(p for p in norm.loc[rows[0]].tolist() if p)[:EXAMPLE_TEXT_CHARS],
                    "keys": list(dict.fromkeys(keys[rows].tolist()))[:MAX_EXAMPLES],
                    "rows": int(len(rows)),
                })
    flagged = key_dup_rows | text_dup_rows
    rate = float(flagged.sum()) / n
    passed = rate <= max_rate
    text_groups.sort(key=lambda g: -g["rows"])
    examples: list = []
    for k, c in repeated_keys.items():
        if len(examples) >= MAX_EXAMPLES // 2:
            break
        examples.append({"key": _json(keys[key_str == k].iloc[0]), "count": int(c)})
    examples.extend(text_groups[: MAX_EXAMPLES - len(examples)])
    details = {
        "duplicate_keys": int(len(repeated_keys)),
        "duplicate_key_rows": int(key_dup_rows.sum()),
        "duplicate_text_groups": n_text_groups,
        "duplicate_text_rows": int(text_dup_rows.sum()),
        "flagged_rows": int(flagged.sum()),
        "rows": n,
    }
    if not flagged.any():
        desc = f"no repeated keys and no identical text under different keys in {n} rows"
    else:
        desc = (f"{int(flagged.sum())} of {n} rows ({_pct(rate)}, limit {_pct(max_rate)}) are duplicates: "
                f"{len(repeated_keys)} repeated key(s), {n_text_groups} text group(s) "
                "under different keys")
    return CheckOutcome(EXACT_DUPLICATES, passed, severity, rate, float(max_rate), desc, examples, details)


# --------------------------------------------------------------------------- outliers


def _bounds(values: np.ndarray, rule: str, cutoff: float) -> dict:
    """Median, MAD and the [low, high] range outside which a value is an outlier.

    rule "mad": |0.6745 * (x - median) / MAD| > cutoff, i.e. outside median ± cutoff*MAD/0.6745;
    when MAD is 0 (or rule "iqr") the fences are Q1 - 3*IQR and Q3 + 3*IQR.
    """
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    if rule == "mad" and mad > 0:
        half = cutoff * mad / MAD_CONSTANT
        return {"median": median, "mad": mad, "rule": "mad", "bounds": [median - half, median + half],
                "scale": mad / MAD_CONSTANT}
    q1, q3 = (float(q) for q in np.quantile(values, [0.25, 0.75]))
    iqr = q3 - q1
    return {"median": median, "mad": mad, "rule": "iqr",
            "bounds": [q1 - IQR_FENCE * iqr, q3 + IQR_FENCE * iqr], "scale": iqr if iqr > 0 else 1.0}


def outliers(df: pd.DataFrame, key: str | None, text_columns: list[str], numeric_columns: list[str],
             max_rate: float, severity, rule: str = "mad", cutoff: float = 3.5,
             text_length: str = "each") -> CheckOutcome:
    """Rows whose text length or numeric value lies far from the rest, by a robust rule.

    The modified z-score 0.6745*(x - median)/MAD (flag above `cutoff`) resists the very
    outliers it looks for, unlike a mean/std z-score; where MAD is 0 the IQR fences
    (Q1 - 3*IQR, Q3 + 3*IQR) are used instead. `rule="iqr"` uses the fences throughout.
    Text lengths are measured per text column (`text_length="each"`, fields "len(col)")
    or on the columns joined by a space (`"joined"`, field "len(a+b)"). Null cells and
    non-numeric values are left out. The statistic is the share of rows flagged in any field.
    """
    if rule not in ("mad", "iqr"):
        raise ValueError(f"rule must be 'mad' or 'iqr', not {rule!r}")
    if text_length not in ("each", "joined"):
        raise ValueError(f"text_length must be 'each' or 'joined', not {text_length!r}")
    n = len(df)
    if n == 0:
        return _empty(OUTLIERS, severity, max_rate)
    keys = _keys_of(df, key)
    positions = np.arange(n)
    fields: list[tuple[str, np.ndarray, np.ndarray, list]] = []  # name, positions, values, raw values
    if text_columns:
        texts = {c: _text_series(df, c).tolist() for c in text_columns}
        if text_length == "each":
            for c in text_columns:
                mask = np.array([t is not None for t in texts[c]], dtype=bool)
                lengths = np.array([len(t) for t in texts[c] if t is not None], dtype=float)
                fields.append((f"len({c})", positions[mask], lengths, lengths.tolist()))
        else:
            joined = [None if all(texts[c][i] is None for c in text_columns)
                      else " ".join(texts[c][i] for c in text_columns if texts[c][i] is not None)
                      for i in range(n)]
            mask = np.array([t is not None for t in joined], dtype=bool)
            lengths = np.array([len(t) for t in joined if t is not None], dtype=float)
            fields.append((f"len({'+'.join(text_columns)})", positions[mask], lengths, lengths.tolist()))
    for c in numeric_columns:
        raw = _numeric_all(df[c])
        mask = np.isfinite(raw)
        fields.append((c, positions[mask], raw[mask], raw[mask].tolist()))

    flagged = np.zeros(n, dtype=bool)
    details: dict = {}
    hits: list[tuple[float, dict]] = []
    for name, pos, values, raw in fields:
        if len(values) == 0:
            details[name] = {"median": None, "mad": None, "bounds": None, "count": 0, "values": 0}
            continue
        b = _bounds(values, rule, cutoff)
        lo, hi = b["bounds"]
        out = (values < lo) | (values > hi)
        flagged[pos[out]] = True
        details[name] = {"median": b["median"], "mad": b["mad"], "bounds": [lo, hi], "rule": b["rule"],
                         "count": int(out.sum()), "values": int(len(values))}
        idx = np.flatnonzero(out)
        scores = np.abs(values[idx] - b["median"]) / b["scale"]
        for j in np.argsort(-scores, kind="stable")[:MAX_EXAMPLES]:
            i = idx[j]
            value = int(raw[i]) if name.startswith("len(") else _json(raw[i])
            hits.append((float(scores[j]), {"key": keys[pos[i]], "column": name, "value": value}))
    count = int(flagged.sum())
    rate = count / n
    hits.sort(key=lambda h: -h[0])
    examples = [h[1] for h in hits[:MAX_EXAMPLES]]
    details["flagged_rows"] = count
    details["rows"] = n
    if count == 0:
        desc = f"no outliers in {len(fields)} field(s) over {n} rows ({rule} rule, cutoff {cutoff})"
    else:
        worst = sorted(((f, d["count"]) for f, d in details.items() if isinstance(d, dict) and d["count"]),
                       key=lambda x: -x[1])
        by_field = ", ".join(f"{f}: {c}" for f, c in worst[:5])
        desc = f"{count} of {n} rows ({_pct(rate)}, limit {_pct(max_rate)}) are outliers ({by_field})"
    return CheckOutcome(OUTLIERS, rate <= max_rate, severity, rate, float(max_rate), desc, examples, details)


# --------------------------------------------------------------------------- schema conformance

_REASON = re.compile(r"(?:^|; )(?P<column>[^:;]+?): (?P<check>.+?) failed for value ")


def parse_reasons(reason) -> list[tuple[str, str, str]]:
    """(column, check, value) triples from one quarantine reason string.

    The string is "col: check failed for value 'v'" parts joined by "; "; a part that does
    not follow the pattern becomes ("<unparsed>", text, "").
    """
    text = _as_text(reason)
    if not text:
        return [("<unknown>", "<no reason>", "")]
    matches = list(_REASON.finditer(text))
    if not matches:
        return [("<unparsed>", text[:EXAMPLE_TEXT_CHARS], "")]
    out = []
    if matches[0].start() > 0:
        out.append(("<unparsed>", text[: matches[0].start()][:EXAMPLE_TEXT_CHARS], ""))
    for m, nxt in zip(matches, matches[1:] + [None], strict=True):
        value = text[m.end(): nxt.start() if nxt is not None else len(text)]
        out.append((m.group("column").strip(), m.group("check").strip(), value))
    return out


def schema_conformance(quarantine: pd.DataFrame | None, total_rows: int, max_rate: float, severity,
                       reason_column: str = "_quarantine_reason", quarantined: int | None = None
                       ) -> CheckOutcome:
    """Share of rows quarantined by schema validation, with failures counted per (column, check).

    `total_rows` is every row read, valid and quarantined together; if it is smaller than the
    quarantine the quarantine size is used, so the rate never exceeds 1. `quarantined`, when
    given, is the number of quarantined rows, of which `quarantine` holds a sample (the
    failures are then counted on the sample).
    """
    q = quarantine if quarantine is not None else pd.DataFrame()
    nq = len(q) if quarantined is None else quarantined
    total = max(int(total_rows or 0), nq)
    if total == 0:
        return _empty(SCHEMA_CONFORMANCE, severity, max_rate, by_column_check={}, quarantined=0)
    by_check: Counter = Counter()
    by_column: Counter = Counter()
    sample: dict[str, str] = {}
    reasons = q[reason_column].tolist() if reason_column in q.columns else [None] * nq
    for reason in reasons:
        for column, check, value in parse_reasons(reason):
            label = f"{column}: {check}"
            by_check[label] += 1
            by_column[column] += 1
            sample.setdefault(label, value[:EXAMPLE_TEXT_CHARS])
    rate = nq / total
    examples = [{"column_check": label, "count": c, "example_value": sample[label]}
                for label, c in by_check.most_common(MAX_EXAMPLES)]
    details = {"by_column_check": dict(by_check.most_common()), "by_column": dict(by_column.most_common()),
               "quarantined": nq, "total_rows": total}
    if nq == 0:
        desc = f"all {total} rows conform to the schema"
    else:
        top, top_count = by_check.most_common(1)[0]
        desc = (f"{nq} of {total} rows ({_pct(rate)}, limit {_pct(max_rate)}) failed schema validation; "
                f"most common: '{top}' x{top_count}")
    return CheckOutcome(SCHEMA_CONFORMANCE, rate <= max_rate, severity, rate, float(max_rate), desc,
                        examples, details)


# --------------------------------------------------------------------------- referential integrity


def _key_text(value) -> str | None:
    """Keys compared as text: 5, 5.0, "5" and numpy 5 all become "5"."""
    if _is_missing(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return str(value)
    return _as_text(value)


def referential_integrity(df: pd.DataFrame, column: str, parent_keys: pd.Series | Iterable, parent: str,
                          max_orphans: int, severity, key: str | None = None) -> CheckOutcome:
    """Values of `df[column]` that are not null and not among `parent_keys` (compared as text).

    The statistic is the number of orphan rows; examples are distinct orphan values, or
    {"key", "value"} per orphan row when `key` names the frame's key column.
    """
    n = len(df)
    base = {"column": column, "parent": parent}
    if n == 0:
        return _empty(REFERENTIAL_INTEGRITY, severity, max_orphans, **base, orphans=0)
    parents = {k for k in (_key_text(v) for v in list(parent_keys)) if k is not None}
    values = df[column].tolist()
    keys = _keys_of(df, key) if key is not None else None
    orphan_rows = [i for i, v in enumerate(values) if (t := _key_text(v)) is not None and t not in parents]
    checked = sum(1 for v in values if not _is_missing(v))
    first_of: dict[str, int] = {}
    for i in orphan_rows:
        first_of.setdefault(_key_text(values[i]), i)
    distinct = list(first_of)
    if keys is not None:
        examples = [{"key": keys[i], "value": _json(values[i])} for i in orphan_rows[:MAX_EXAMPLES]]
    else:
        examples = [_json(values[first_of[d]]) for d in distinct[:MAX_EXAMPLES]]
    count = len(orphan_rows)
    details = {**base, "orphans": count, "distinct_orphans": len(distinct), "checked": checked,
               "parent_keys": len(parents), "orphan_rate": (count / checked) if checked else 0.0}
    if count == 0:
        desc = f"all {checked} non-null values of '{column}' exist in {parent}"
    else:
        desc = (f"{count} of {checked} non-null values of '{column}' ({len(distinct)} distinct) are missing "
                f"from {parent} (limit {max_orphans})")
    return CheckOutcome(REFERENTIAL_INTEGRITY, count <= max_orphans, severity, float(count),
                        float(max_orphans), desc, examples, details)


# --------------------------------------------------------------------------- distribution drift


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins (epsilon for empty bins)."""
    e = expected / expected.sum()
    a = actual / actual.sum()
    e = np.where(e == 0, PSI_EPSILON, e)
    a = np.where(a == 0, PSI_EPSILON, a)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_psi(current: np.ndarray, previous: np.ndarray, bins: int = PSI_BINS) -> float:
    """PSI over `bins` quantile bins of `previous` (outer bins open-ended).

    Tied quantiles collapse into one cut; when the top cut equals the previous maximum a cut
    just above it is added, so values beyond a constant or capped previous sample get a bin.
    """
    cuts = np.unique(np.quantile(previous, np.linspace(0, 1, bins + 1)[1:-1]))
    top = float(previous.max())
    if len(cuts) == 0 or cuts[-1] >= top:
        cuts = np.append(cuts, np.nextafter(top, np.inf))
    nb = len(cuts) + 1
    e = np.bincount(np.searchsorted(cuts, previous, side="right"), minlength=nb).astype(float)
    a = np.bincount(np.searchsorted(cuts, current, side="right"), minlength=nb).astype(float)
    return _psi(e, a)


def categorical_psi(current: Iterable, previous: Iterable) -> float:
    """PSI over the union of categories; a category absent on one side gets epsilon."""
    c, p = Counter(current), Counter(previous)
    cats = sorted(set(c) | set(p), key=str)
    return _psi(np.array([p[k] for k in cats], dtype=float), np.array([c[k] for k in cats], dtype=float))


def distribution_drift(current: pd.DataFrame, previous: pd.DataFrame | None, numeric_columns: list[str],
                       text_columns: list[str], categorical_columns: list[str], ks_threshold: float,
                       psi_threshold: float, severity) -> CheckOutcome:
    """Compare this materialization with the previous one, field by field.

    Numeric fields and text lengths: two-sample KS statistic and PSI over 10 quantile bins of
    the previous data; categorical fields (compared as text): PSI over the union of
    categories. Nulls are left out (completeness covers them); a field with no values on one
    side, or absent from a frame, is skipped and reported as such. Passes when every field has
    KS <= ks_threshold and PSI <= psi_threshold; the statistic is the largest PSI.
    """
    if previous is None or len(previous) == 0:
        return CheckOutcome(DISTRIBUTION_DRIFT, True, severity, 0.0, float(psi_threshold), NO_PREVIOUS,
                            [], {"rows": len(current) if current is not None else 0, "previous_rows": 0})
    if current is None or len(current) == 0:
        return _empty(DISTRIBUTION_DRIFT, severity, psi_threshold, "current frame is empty",
                      previous_rows=len(previous))

    def lengths(frame: pd.DataFrame, col: str) -> np.ndarray:
        return np.array([len(t) for t in _text_series(frame, col).tolist() if t is not None], dtype=float)

    def cats(frame: pd.DataFrame, col: str) -> list[str]:
        return [t for t in (_key_text(v) for v in frame[col].tolist()) if t is not None]

    plan = ([(c, c, "numeric") for c in numeric_columns]
            + [(f"len({c})", c, "text_length") for c in text_columns]
            + [(c, c, "categorical") for c in categorical_columns])
    details: dict = {}
    drifted: list[dict] = []
    worst = 0.0
    for name, col, kind in plan:
        entry: dict = {"ks": None, "psi": None, "kind": kind}
        details[name] = entry
        missing = [side for side, fr in (("current", current), ("previous", previous))
                   if col not in fr.columns]
        if missing:
            entry["skipped"] = f"column absent from {' and '.join(missing)} frame"
            continue
        if kind == "categorical":
            cur, prev = cats(current, col), cats(previous, col)
        elif kind == "numeric":
            cur, prev = _numeric(current[col]), _numeric(previous[col])
        else:
            cur, prev = lengths(current, col), lengths(previous, col)
        entry["n_current"], entry["n_previous"] = len(cur), len(prev)
        if len(cur) == 0 or len(prev) == 0:
            entry["skipped"] = "no values on one side"
            continue
        if kind == "categorical":
            entry["psi"] = categorical_psi(cur, prev)
            bad = entry["psi"] > psi_threshold
        else:
            from scipy import stats  # a second to import: not on every code path's import

            entry["ks"] = float(stats.ks_2samp(cur, prev).statistic)
            entry["psi"] = numeric_psi(cur, prev)
            bad = entry["ks"] > ks_threshold or entry["psi"] > psi_threshold
        worst = max(worst, entry["psi"])
        if bad:
            drifted.append({"field": name, "kind": kind, "ks": entry["ks"], "psi": entry["psi"]})
    drifted.sort(key=lambda d: -(d["psi"] or 0.0))
    compared = sum(1 for d in details.values() if d["psi"] is not None)
    if not drifted:
        desc = (f"no drift in {compared} field(s) against the previous {len(previous)} rows "
                f"(max PSI {worst:.3f}, limits KS {ks_threshold}, PSI {psi_threshold})")
    else:
        names = ", ".join(d["field"] for d in drifted[:5])
        desc = (f"{len(drifted)} of {compared} field(s) drifted from the previous materialization: {names} "
                f"(max PSI {worst:.3f}, limits KS {ks_threshold}, PSI {psi_threshold})")
    return CheckOutcome(DISTRIBUTION_DRIFT, not drifted, severity, worst, float(psi_threshold), desc,
                        drifted[:MAX_EXAMPLES], details)
