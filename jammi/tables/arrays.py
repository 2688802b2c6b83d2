"""Arrow arrays built straight from numpy buffers and Python strings. pyarrow's `pa.array()`
imports pandas the first time it is called (to test whether its argument is a pandas object),
which costs a `jammi search` a quarter of a second; these never do. No nulls."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def _numbers(values, dtype, arrow_type: pa.DataType) -> pa.Array:
    data = np.ascontiguousarray(np.asarray(values, dtype=dtype).reshape(-1))
    return pa.Array.from_buffers(arrow_type, len(data), [None, pa.py_buffer(data)])


def int64s(values) -> pa.Array:
    """An int64 array of `values` (a sequence or numpy array of integers)."""
    return _numbers(values, np.int64, pa.int64())


def float64s(values) -> pa.Array:
    """A float64 array of `values` (a sequence or numpy array of numbers)."""
    return _numbers(values, np.float64, pa.float64())


def strings(values: Sequence[str]) -> pa.Array:
    """A string (utf8) array of `values`."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError(f"{offsets[-1]} bytes of text do not fit one Arrow string array")
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(encoded), buffers)
