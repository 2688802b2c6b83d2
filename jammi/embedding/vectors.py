"""Vectors at the Arrow boundary: (n, d) float32 matrices to and from FixedSizeList<Float32, d>
columns, without Python loops."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def to_vector_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def vectors_of(column: pa.ChunkedArray | pa.Array, dimensions: int) -> np.ndarray:
    """A FixedSizeList<Float32> column as an (n, d) float32 matrix, without Python loops."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32, copy=False).reshape(-1, dimensions)
