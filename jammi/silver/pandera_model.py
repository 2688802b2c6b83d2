"""Pandera models built from declared column types, and row-level validation that
splits a frame into valid rows and quarantined rows with the reasons they failed."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from jammi.spec.project import ColumnSpec, SourceSpec
from jammi.types import PANDAS_DTYPES

REASON_COLUMN = "_quarantine_reason"
MAX_PASSES = 4
CHECK_FINITE = "not_infinite"
CHECK_NOT_NAN = "not_nan"
HINTS = {  # said after a failed check's reason
    CHECK_FINITE: " (declare `allow_inf: true` on the column to accept infinities)",
    CHECK_NOT_NAN: " (the column is not nullable)",
}


def _field(column: str, spec: ColumnSpec, is_key: bool):
    kwargs = {"alias": column, "nullable": spec.nullable and not is_key, "unique": is_key}
    if spec.ge is not None:
        kwargs["ge"] = spec.ge
    if spec.le is not None:
        kwargs["le"] = spec.le
    if spec.isin is not None:
        kwargs["isin"] = spec.isin
    if spec.max_length is not None:
        kwargs["str_length"] = {"max_value": spec.max_length}
    return pa.Field(**kwargs)


def _finite(nullable: bool):
    """A float column's checks of non-finite values: infinities (what `1e309`, `inf` or
    `Infinity` type to) are refused unless the column declares `allow_inf: true`; NaN
    (`nan`) is refused in a column that is not nullable, where pandas would let it pass."""
    def not_infinite(cls, series: pd.Series) -> pd.Series:
        return ~np.isinf(series.astype("float64"))

    def not_nan(cls, series: pd.Series) -> pd.Series:
        return ~np.isnan(series.astype("float64"))

    return not_infinite, (None if nullable else not_nan)


def _checks(column: str, spec: ColumnSpec, is_key: bool) -> dict:
    """Checks beyond what `pa.Field` takes, as DataFrameModel attributes."""
    if spec.type != "float":
        return {}
    infinite, nan = _finite(spec.nullable and not is_key)
    found = {}
    if not spec.allow_inf:
        found["infinite"] = pa.check(column, name=CHECK_FINITE)(infinite)
    if nan is not None:
        found["nan"] = pa.check(column, name=CHECK_NOT_NAN)(nan)
    return found


def model_name(source: str) -> str:
    return "".join(part.capitalize() for part in source.split("_")) + "Frame"


def build_model(source: str, spec: SourceSpec) -> type[pa.DataFrameModel]:
    """A DataFrameModel class for `source`: one field per declared column, coerced.

    Fields are named `c0`, `c1`... with the column name as their alias: Pandera skips
    attributes that start with an underscore (BEIR's `_id`) and needs identifiers, while
    declared column names may be neither."""
    columns = list(spec.columns.items())
    annotations = {f"c{i}": Series[PANDAS_DTYPES[c.type]] for i, (_, c) in enumerate(columns)}
    attrs: dict = {"__annotations__": annotations, "__module__": __name__}
    attrs.update({f"c{i}": _field(col, c, col == spec.key) for i, (col, c) in enumerate(columns)})
    for i, (col, c) in enumerate(columns):
        checks = _checks(col, c, col == spec.key)
        attrs.update({f"_check_c{i}_{what}": check for what, check in checks.items()})
    attrs["Config"] = type("Config", (), {"coerce": True, "strict": False, "name": source})
    return type(model_name(source), (pa.DataFrameModel,), attrs)


def _reasons(failures: pd.DataFrame) -> dict[int, list[str]]:
    by_row: dict[int, list[str]] = defaultdict(list)
    for row in failures.itertuples(index=False):
        if row.index is None or pd.isna(row.index):
            continue
        check = str(row.check)
        if check.startswith("dtype("):
            continue  # the coerce_dtype failure on the same cell says it better
        value = row.failure_case
        value = value.item() if isinstance(value, np.generic) else value  # -3, not np.int64(-3)
        reason = f"{row.column}: {check} failed for value {value!r}{HINTS.get(check, '')}"
        if reason not in by_row[int(row.index)]:
            by_row[int(row.index)].append(reason)
    return by_row


def split_valid(
    frame: pd.DataFrame, model: type[pa.DataFrameModel], refused: dict | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate row by row: (valid rows, coerced) and (failed rows as-is + reason column).

    Coercion failures hide later checks on the same column, so validation repeats on
    the remaining rows until they pass; a row may collect reasons from several passes.
    `refused`: {row index: reasons} of rows refused before validation (a cell that could not
    be kept as it was read); they are validated too, and fail whatever validation says.
    """
    remaining = frame
    reasons: dict[int, list[str]] = defaultdict(list)
    for idx, rs in (refused or {}).items():
        if idx in frame.index:
            reasons[idx].extend(rs)
    for _ in range(MAX_PASSES):
        try:
            valid = model.validate(remaining, lazy=True)
            break
        except pa.errors.SchemaErrors as err:
            failed = _reasons(err.failure_cases)
            if not failed:
                raise
            for idx, rs in failed.items():
                reasons[idx].extend(rs)
            remaining = remaining.drop(index=list(failed))
    else:
        valid = model.validate(remaining, lazy=True)
    valid = valid.drop(index=[i for i in reasons if i in valid.index])
    quarantine = frame.loc[sorted(reasons)].copy()
    quarantine[REASON_COLUMN] = ["; ".join(reasons[i]) for i in quarantine.index]
    return valid, quarantine.reset_index(drop=True)
