"""Turning a row's text columns into the one string that is embedded."""

from __future__ import annotations

import hashlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

TEXT_SEPARATOR = " "


def compose_texts(frame: pd.DataFrame, text_columns: list[str]) -> list[str | None]:
    """Join the non-empty values of `text_columns` with one space; None when all are empty."""
    cols = [frame[c].tolist() for c in text_columns]
    out: list[str | None] = []
    for values in zip(*cols, strict=True):
        parts = [str(v) for v in values if present(v)]
        out.append(TEXT_SEPARATOR.join(parts) if parts else None)
    return out


def compose_batch(batch: pa.RecordBatch, text_columns: list[str]) -> list[str | None]:
    """`compose_texts` of an Arrow record batch, the same strings: string columns are read as
    Python strings without a pandas frame (a value is present when it is not only whitespace);
    a batch with a column of another type goes through pandas, as `compose_texts` does."""
    import pyarrow as pa

    if not all(pa.types.is_string(batch.schema.field(c).type)
               or pa.types.is_large_string(batch.schema.field(c).type) for c in text_columns):
        return compose_texts(batch.select(text_columns).to_pandas(), text_columns)
    cols = [batch.column(c).to_pylist() for c in text_columns]
    if len(cols) == 1:
        return [v if v and not v.isspace() else None for v in cols[0]]
    out: list[str | None] = []
    for values in zip(*cols, strict=True):
        parts = [v for v in values if v and not v.isspace()]
        out.append(TEXT_SEPARATOR.join(parts) if parts else None)
    return out


def present(value) -> bool:
    pandas = sys.modules.get("pandas")  # pd.NA exists only once pandas is loaded; not imported here
    if value is None or (pandas is not None and value is pandas.NA):
        return False
    if isinstance(value, float) and value != value:
        return False
    return bool(str(value).strip())


def content_hash(model_id: str, text: str) -> str:
    """Identifies (model, exact text): unchanged rows keep their hash across refreshes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(model_id.encode("utf-8"))
    h.update(b"\x00")
    h.update(text.encode("utf-8"))
    return h.hexdigest()
