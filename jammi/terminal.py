"""Frames as text for a terminal: an aligned table that fits the window, JSON or CSV.

Tables left-align text and right-align numbers, show floats in fixed point, abbreviate
vectors to their first values and length, and shorten the widest text columns (with "…")
until the table fits the terminal width (100 columns when the output is not a terminal).
JSON and CSV keep every value whole; vectors become JSON lists.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from datetime import date, datetime

import numpy as np
import pandas as pd

DEFAULT_WIDTH = 100
MIN_COLUMN = 8
GAP = "  "
VECTOR_PREVIEW = 3
FLOAT_DIGITS = 4


def terminal_width() -> int:
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns if os.isatty(1) else DEFAULT_WIDTH


def _is_vector(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _plain(value):
    """A JSON-able Python value: numpy scalars and arrays unwrapped, NaN and NaT as null."""
    if _is_vector(value):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    return value


def _cell(value) -> str:
    if isinstance(value, (pd.Timestamp, datetime)) and not pd.isna(value):
        return value.isoformat(sep=" ", timespec="seconds")
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, list):
        head = ", ".join(_cell(v) for v in value[:VECTOR_PREVIEW])
        return f"[{head}, …] ({len(value)})" if len(value) > VECTOR_PREVIEW else f"[{head}]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        text = f"{value:.{FLOAT_DIGITS}f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    return " ".join(str(value).split())


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def _fair_cap(widths: list[int], budget: int) -> int:
    """The largest cap c with sum(min(w, c)) <= budget: narrow columns keep their width and
    the wide ones share what is left equally."""
    left, remaining = budget, len(widths)
    for w in sorted(widths):
        share = left // remaining
        if w > share:
            return max(MIN_COLUMN, share)
        left, remaining = left - w, remaining - 1
    return max(widths)


def render_table(frame: pd.DataFrame, width: int | None = None) -> str:
    if frame.empty:
        return "(no rows)"
    width = width or terminal_width()
    headers = [str(c) for c in frame.columns]
    cells = [[_cell(v) for v in frame[c].tolist()] for c in frame.columns]
    right = [_numeric(frame[c]) for c in frame.columns]
    fixed = [r or frame[c].map(_is_vector).any() for c, r in zip(frame.columns, right, strict=True)]
    widths = [max([len(h), *(len(v) for v in col)]) for h, col in zip(headers, cells, strict=True)]
    budget = width - len(GAP) * (len(widths) - 1) - sum(w for w, f in zip(widths, fixed, strict=True) if f)
    flexible = sorted(w for w, f in zip(widths, fixed, strict=True) if not f)
    if sum(flexible) > budget:  # numbers and vector previews keep their width; text shares the rest
        cap = _fair_cap(flexible, max(budget, MIN_COLUMN * len(flexible)))
        widths = [w if f else min(w, cap) for w, f in zip(widths, fixed, strict=True)]

    def line(values: list[str]) -> str:
        parts = [_shorten(v, w).rjust(w) if r else _shorten(v, w).ljust(w)
                 for v, w, r in zip(values, widths, right, strict=True)]
        return GAP.join(parts).rstrip()

    rows = [line(headers)] + [line([col[i] for col in cells]) for i in range(len(frame))]
    return "\n".join(rows)


def render_json(frame: pd.DataFrame) -> str:
    records = [{str(k): _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
    return json.dumps(records, indent=2, ensure_ascii=False, default=str)


def render_csv(frame: pd.DataFrame) -> str:
    out = frame.copy()
    for col in out.columns:
        if out[col].map(lambda v: _is_vector(v) or isinstance(v, dict)).any():
            out[col] = out[col].map(lambda v: json.dumps(_plain(v)) if v is not None else "")
    return out.to_csv(index=False)


def render(frame: pd.DataFrame, fmt: str) -> str:
    if fmt == "json":
        return render_json(frame)
    if fmt == "csv":
        return render_csv(frame).rstrip("\n")
    return render_table(frame)
