"""The one type vocabulary of jammi.yaml (columns, entity fields, casts), its pandas dtypes,
and how a single value is converted to one of its types."""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd

ColumnType = Literal["str", "int", "float", "bool", "datetime", "date"]

PANDAS_DTYPES: dict[str, str] = {
    "str": "string",
    "int": "Int64",
    "float": "Float64",
    "bool": "boolean",
    "datetime": "datetime64[ns]",
    "date": "datetime64[ns]",
}

TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})


def is_missing(value: Any) -> bool:
    return value is None or (not isinstance(value, (str, list, dict)) and bool(pd.isna(value)))


def coerce_value(value: Any, to: str) -> tuple[bool, Any]:
    """(True, converted) or (False, value unchanged) when `value` cannot become type `to`."""
    if is_missing(value):
        return True, None
    if isinstance(value, (list, dict, tuple, set)):
        return False, value
    try:
        if to == "str":
            if isinstance(value, bool):
                return True, str(value).lower()
            if isinstance(value, float) and value.is_integer():
                return True, str(int(value))
            return True, str(value)
        if to in ("int", "float"):
            if isinstance(value, bool):
                return False, value
            number = float(value.strip()) if isinstance(value, str) else float(value)
            if to == "float":
                return True, number
            return (True, int(number)) if number.is_integer() else (False, value)
        if to == "bool":
            if isinstance(value, bool):
                return True, value
            text = str(value).strip().lower()
            if text in TRUE_WORDS or text in FALSE_WORDS:
                return True, text in TRUE_WORDS
            return False, value
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            return False, value
        return True, stamp.normalize() if to == "date" else stamp
    except (ValueError, TypeError, OverflowError):
        return False, value
