"""Materialization metadata shared by the frame assets."""

from __future__ import annotations

import dagster as dg
import pandas as pd

PREVIEW_ROWS = 5
PREVIEW_CHARS = 60


def column_schema(df: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in df.dtypes.items()]
    )


def preview_markdown(df: pd.DataFrame, rows: int = PREVIEW_ROWS) -> str:
    head = df.head(rows).copy()
    for col in head.columns:
        if head[col].dtype == object or str(head[col].dtype) == "string":
            head[col] = head[col].map(
                lambda v: v if not isinstance(v, str) or len(v) <= PREVIEW_CHARS
                else v[: PREVIEW_CHARS - 1] + "…"
            )
    return head.to_markdown(index=False) if len(head) else "_no rows_"


def frame_metadata(df: pd.DataFrame) -> dict:
    return {
        "dagster/row_count": len(df),
        "dagster/column_schema": column_schema(df),
        "preview": dg.MetadataValue.md(preview_markdown(df)),
    }


def stored_metadata(path, rows: int, head: pd.DataFrame | None) -> dict:
    """`frame_metadata` of a frame the engine wrote batch by batch: its row count, and the
    schema and preview of its first rows."""
    head = head if head is not None else pd.DataFrame()
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": column_schema(head),
        "preview": dg.MetadataValue.md(preview_markdown(head)),
        "path": dg.MetadataValue.path(str(path)),
    }
