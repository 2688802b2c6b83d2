"""Raw inference without persistence: one Arrow row per input, errors tracked per row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from jammi.embedding.encode import EMPTY_TEXT_ERROR, BatchSizer, encode_window
from jammi.embedding.model import Encoder
from jammi.embedding.texts import present
from jammi.embedding.vectors import to_vector_array


def infer_schema(dimensions: int) -> pa.Schema:
    return pa.schema(
        [
            ("_row_id", pa.string()),
            ("_source", pa.string()),
            ("_model", pa.string()),
            ("_status", pa.string()),
            ("_error", pa.string()),
            ("_latency_ms", pa.float64()),
            ("vector", pa.list_(pa.float32(), dimensions)),
        ]
    )


def infer_texts(
    encoder: Encoder,
    texts: list[str | None],
    row_ids: list[str] | None = None,
    source: str = "inline",
    batch_size: int = 32,
) -> pa.Table:
    """Embed `texts`; null or empty ones get _status 'error' and the rest go on."""
    row_ids = [str(i) for i in range(len(texts))] if row_ids is None else [str(r) for r in row_ids]
    if len(row_ids) != len(texts):
        raise ValueError(f"{len(row_ids)} row ids for {len(texts)} texts")
    keep = [i for i, t in enumerate(texts) if present(t)]
    window = encode_window(encoder, [str(texts[i]) for i in keep], BatchSizer(size=batch_size))
    n, dims = len(texts), encoder.dimensions
    errors: list[str | None] = [EMPTY_TEXT_ERROR] * n
    latency = [0.0] * n
    valid = [False] * n
    vectors = np.zeros((n, dims), dtype=np.float32)
    for j, i in enumerate(keep):
        errors[i] = window.errors[j]
        latency[i] = float(window.latency_ms[j])
        valid[i] = window.errors[j] is None
        vectors[i] = window.vectors[j]
    vec = to_vector_array(vectors)
    mask = pa.array([not v for v in valid])
    vec = pa.FixedSizeListArray.from_arrays(vec.values, dims, mask=mask)
    return pa.table(
        {
            "_row_id": pa.array(row_ids, pa.string()),
            "_source": pa.array([source] * n, pa.string()),
            "_model": pa.array([encoder.model_id] * n, pa.string()),
            "_status": pa.array(["ok" if v else "error" for v in valid], pa.string()),
            "_error": pa.array(errors, pa.string()),
            "_latency_ms": pa.array(latency, pa.float64()),
            "vector": vec,
        },
        schema=infer_schema(dims),
    )
