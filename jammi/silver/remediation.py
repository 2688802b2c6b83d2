"""Deterministic fixes applied to a raw frame before validation, as declared in a source's
`remediation:` block: whitespace trimming and collapsing, Unicode NFC normalisation and
clipping of numeric values to their declared bounds. Every fix is off unless asked for.

Values a fix cannot read (a non-numeric price, say) are left as they are, so validation
still quarantines their rows; nulls stay null. The input frame is never modified.
"""

from __future__ import annotations

import math

import pandas as pd

from jammi.silver.pandera_model import REASON_COLUMN
from jammi.spec.project import SourceSpec

FIXES = ("trim", "unicode_nfc", "collapse_whitespace", "clip_numeric")
_WHITESPACE_RUN = r"\s+"


def _columns(frame: pd.DataFrame, spec: SourceSpec, types: tuple[str, ...]) -> list[str]:
    chosen = spec.remediation.columns or list(spec.columns)
    return [c for c in chosen if c in frame.columns and spec.columns[c].type in types]


def _fix_strings(out: pd.DataFrame, col: str, fix: str) -> int:
    series = out[col]
    is_str = series.map(lambda v: isinstance(v, str)).astype(bool)
    if not is_str.any():
        return 0
    before = series[is_str].astype(object)
    if fix == "trim":
        after = before.str.strip()
    elif fix == "unicode_nfc":
        after = before.str.normalize("NFC")
    else:
        after = before.str.replace(_WHITESPACE_RUN, " ", regex=True)
    changed = after != before
    if changed.any():
        idx = changed[changed].index
        if not isinstance(series.dtype, pd.StringDtype) and series.dtype != object:
            out[col] = series.astype(object)
        out.loc[idx, col] = after[idx]
    return int(changed.sum())


def _bound(value: float, kind: str, is_int: bool) -> int | float:
    if not is_int:
        return float(value)
    return int(math.ceil(value)) if kind == "ge" else int(math.floor(value))


def _clip(out: pd.DataFrame, col: str, spec: SourceSpec) -> int:
    column = spec.columns[col]
    if column.ge is None and column.le is None:
        return 0
    series = out[col]
    numbers = pd.to_numeric(series.astype(object), errors="coerce")  # unparseable -> NaN: untouched
    is_int = column.type == "int"
    changed = 0
    for kind, limit in (("ge", column.ge), ("le", column.le)):
        if limit is None:
            continue
        mask = (numbers < limit) if kind == "ge" else (numbers > limit)
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            series = series.astype(object).where(~mask, _bound(limit, kind, is_int))
            changed += int(mask.sum())
    if changed:
        out[col] = series
    return changed


def remediate(frame: pd.DataFrame, spec: SourceSpec) -> tuple[pd.DataFrame, dict[str, int]]:
    """A fixed copy of `frame` (same index) and the number of cells each fix changed."""
    rem = spec.remediation
    counts = dict.fromkeys(FIXES, 0)
    out = frame.copy(deep=True)
    for fix in ("unicode_nfc", "trim", "collapse_whitespace"):
        if getattr(rem, fix):
            for col in _columns(out, spec, ("str",)):
                counts[fix] += _fix_strings(out, col, fix)
    if rem.clip_numeric:
        for col in _columns(out, spec, ("int", "float")):
            counts["clip_numeric"] += _clip(out, col, spec)
    return out, counts


def quarantine_as_extracted(raw: pd.DataFrame, valid: pd.DataFrame, quarantine: pd.DataFrame) -> pd.DataFrame:
    """The quarantined rows with the values they had when extracted (not remediated).

    `valid` keeps the index of the frame `split_valid` was given, and `quarantine` holds the
    other rows in index order; `raw` shares that index because `remediate` keeps it.
    """
    failed = raw.index.difference(valid.index).sort_values()
    if not raw.index.is_unique or len(failed) != len(quarantine):
        return quarantine  # cannot line the rows up: keep the remediated values
    rows = raw.loc[failed].copy()
    rows[REASON_COLUMN] = quarantine[REASON_COLUMN].tolist()
    return rows.reset_index(drop=True)
