"""Frames as text for a terminal: an aligned table that fits the window, JSON or CSV.

Tables left-align text and right-align numbers, show floats in fixed point, abbreviate
vectors to their first values and length, and shorten the widest text columns (with "…")
until the table fits the terminal width (100 columns when the output is not a terminal).
JSON and CSV keep every value whole; vectors become JSON lists.

A frame is a pandas DataFrame or an Arrow table. An Arrow table of plain columns (integers,
floats, booleans, strings, dates, timestamps in microseconds) is printed without pandas, exactly
as the frame DuckDB would give for it (jammi.query.rows.to_pandas_as_duckdb) is printed, so
`jammi search` never imports pandas; any other Arrow table is converted to that frame first.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import sys
from datetime import date, datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from jammi.tables.arrays import cast

if TYPE_CHECKING:
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


def _missing(value) -> bool:
    """None, or pandas' NA or NaT (which exist only once pandas is loaded: not imported here)."""
    if value is None:
        return True
    pandas = sys.modules.get("pandas")
    return pandas is not None and (value is pandas.NA or value is pandas.NaT)


def _plain(value):
    """A JSON-able Python value: numpy scalars and arrays unwrapped, NaN and NaT as null."""
    if _is_vector(value):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if _missing(value):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (datetime, date)):  # pandas' Timestamp is a datetime
        return value.isoformat()
    return value


def _cell(value) -> str:
    if isinstance(value, datetime) and not _missing(value):
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
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _native(arrow_type: pa.DataType) -> bool:
    """An Arrow column type printed without pandas (see the module docstring)."""
    return (pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type)
            or pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or pa.types.is_float32(arrow_type) or pa.types.is_float64(arrow_type)
            or pa.types.is_date32(arrow_type)
            or (pa.types.is_timestamp(arrow_type) and arrow_type.tz is None
                and arrow_type.unit in ("us", "ns")))


def _as_printed(frame):
    """`frame` itself: a pandas frame, or an Arrow table of native columns with its dates and
    timestamps in microseconds (what Python's datetime holds); any other Arrow table, or one with
    a timestamp finer than a microsecond, as DuckDB's pandas frame of it."""
    if not isinstance(frame, pa.Table):
        return frame
    if all(_native(f.type) for f in frame.schema):
        try:
            for i, field in enumerate(frame.schema):
                if pa.types.is_date32(field.type) or pa.types.is_timestamp(field.type):
                    # a safe cast: a nanosecond timestamp that is no whole microsecond raises
                    as_us = cast(frame.column(i), pa.timestamp("us"))
                    frame = frame.set_column(i, field.name, as_us)
            return frame
        except pa.ArrowInvalid:
            pass
    from jammi.query.rows import to_pandas_as_duckdb

    return to_pandas_as_duckdb(frame)


def _columns(frame) -> tuple[list[str], list[list], list[bool]]:
    """Headers, each column's values as Python objects, and which columns are numeric."""
    if isinstance(frame, pa.Table):
        types = [f.type for f in frame.schema]
        return (list(frame.column_names), [c.to_pylist() for c in frame.columns],
                [pa.types.is_integer(t) or pa.types.is_floating(t) for t in types])
    return ([str(c) for c in frame.columns], [frame[c].tolist() for c in frame.columns],
            [_numeric(frame[c]) for c in frame.columns])


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


def _empty(frame) -> bool:
    if isinstance(frame, pa.Table):
        return frame.num_rows == 0 or frame.num_columns == 0
    return frame.empty


def render_table(frame: pd.DataFrame | pa.Table, width: int | None = None) -> str:
    frame = _as_printed(frame)
    if _empty(frame):
        return "(no rows)"
    width = width or terminal_width()
    headers, values, right = _columns(frame)
    cells = [[_cell(v) for v in col] for col in values]
    fixed = [r or any(_is_vector(v) for v in col) for col, r in zip(values, right, strict=True)]
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

    rows = [line(headers)] + [line([col[i] for col in cells]) for i in range(len(cells[0]))]
    return "\n".join(rows)


def render_json(frame: pd.DataFrame | pa.Table) -> str:
    frame = _as_printed(frame)
    rows = frame.to_pylist() if isinstance(frame, pa.Table) else frame.to_dict(orient="records")
    records = [{str(k): _plain(v) for k, v in row.items()} for row in rows]
    return json.dumps(records, indent=2, ensure_ascii=False, default=str)


def _csv_texts(column: pa.ChunkedArray) -> list[str]:
    """A native Arrow column's values as pandas' to_csv writes them: numbers as numpy prints
    them, booleans True/False, timestamps at the finest precision any of them needs (dates
    alone when all fall at midnight), nulls and NaN empty."""
    t = column.type
    if pa.types.is_floating(t):
        dtype = np.float32 if pa.types.is_float32(t) else np.float64  # as numpy prints it, as pandas does
        numbers = [math.nan if v is None else v for v in column.to_pylist()]
        texts = np.array(numbers, dtype=dtype).astype(str)
        return ["" if math.isnan(x) else s for x, s in zip(numbers, texts, strict=True)]
    values = column.to_pylist()
    if pa.types.is_timestamp(t):
        present = [v for v in values if v is not None]
        if all(v.time() == datetime.min.time() for v in present):
            fmt = "%Y-%m-%d"
        elif any(v.microsecond % 1000 for v in present):
            fmt = "%Y-%m-%d %H:%M:%S.%f"
        elif any(v.microsecond for v in present):
            return ["" if v is None else v.strftime("%Y-%m-%d %H:%M:%S.") + f"{v.microsecond // 1000:03d}"
                    for v in values]
        else:
            fmt = "%Y-%m-%d %H:%M:%S"
        return ["" if v is None else v.strftime(fmt) for v in values]
    return ["" if v is None else str(v) for v in values]


def render_csv(frame: pd.DataFrame | pa.Table) -> str:
    frame = _as_printed(frame)
    if isinstance(frame, pa.Table):
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(frame.column_names)
        writer.writerows(zip(*(_csv_texts(c) for c in frame.columns), strict=True))
        return out.getvalue()
    out = frame.copy()
    for col in out.columns:
        if any(_is_vector(v) or isinstance(v, dict) for v in out[col]):
            out[col] = out[col].map(lambda v: json.dumps(_plain(v)) if v is not None else "")
    return out.to_csv(index=False)


def render(frame: pd.DataFrame | pa.Table, fmt: str) -> str:
    if fmt == "json":
        return render_json(frame)
    if fmt == "csv":
        return render_csv(frame).rstrip("\n")
    return render_table(frame)


def render_pair(title: str, left_label: str, right_label: str, rows: list[tuple[str, object, object, str]],
                width: int | None = None, lines_per_value: int = 3) -> str:
    """Two records side by side for a person to compare: a title line, then per field its name,
    the left and right values (wrapped to at most `lines_per_value` lines, then "…") and a note
    (the field's similarity)."""
    import textwrap

    width = width or terminal_width()
    name_w = max([len(r[0]) for r in rows] + [5])
    note_w = max([len(r[3]) for r in rows] + [0])
    side = max(12, (width - name_w - note_w - 3 * len(GAP)) // 2)

    def cell(value) -> list[str]:
        text = "-" if _missing(value) or (isinstance(value, float) and math.isnan(value)) else _cell(value)
        lines = textwrap.wrap(" ".join(text.split()), side) or [""]
        if len(lines) > lines_per_value:
            lines = lines[:lines_per_value]
            lines[-1] = _shorten(lines[-1] + " …", side) if len(lines[-1]) + 2 <= side else \
                lines[-1][: side - 1] + "…"
        return lines

    head = f"{'':<{name_w}}{GAP}{_shorten(left_label, side):<{side}}{GAP}{_shorten(right_label, side)}"
    out = [title, head.rstrip()]
    for name, left, right, note in rows:
        a, b = cell(left), cell(right)
        for n in range(max(len(a), len(b))):
            first = n == 0
            line = (f"{name if first else '':<{name_w}}{GAP}{a[n] if n < len(a) else '':<{side}}{GAP}"
                    f"{b[n] if n < len(b) else '':<{side}}")
            out.append((line + (GAP + note if first and note else "")).rstrip())
    return "\n".join(out)
