"""The one type vocabulary of jammi.yaml (columns, entity fields, casts), its pandas dtypes,
and how a single value is converted to one of its types. pandas is imported only to convert a
value to a datetime or date: loading a project (whose step defaults are checked here) needs none."""

from __future__ import annotations

import math
import sys
from typing import Any, Literal

import numpy as np

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
    """None, NaN, NaT or pandas' NA (pd.isna of a scalar)."""
    if value is None:
        return True
    if isinstance(value, (str, list, dict)):
        return False
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        return bool(pandas.isna(value))
    # no pandas loaded, so no NA or NaT of its own: NaN floats and numpy's NaT are what is missing
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return isinstance(value, (np.datetime64, np.timedelta64)) and bool(np.isnat(value))


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
        import pandas as pd

        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            return False, value
        return True, stamp.normalize() if to == "date" else stamp
    except (ValueError, TypeError, OverflowError):
        return False, value
