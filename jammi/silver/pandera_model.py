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
        reason = f"{row.column}: {check} failed for value {value!r}"
        if reason not in by_row[int(row.index)]:
            by_row[int(row.index)].append(reason)
    return by_row


def split_valid(
    frame: pd.DataFrame, model: type[pa.DataFrameModel]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate row by row: (valid rows, coerced) and (failed rows as-is + reason column).

    Coercion failures hide later checks on the same column, so validation repeats on
    the remaining rows until they pass; a row may collect reasons from several passes.
    """
    remaining = frame
    reasons: dict[int, list[str]] = defaultdict(list)
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
    quarantine = frame.loc[sorted(reasons)].copy()
    quarantine[REASON_COLUMN] = ["; ".join(reasons[i]) for i in quarantine.index]
    return valid, quarantine.reset_index(drop=True)
