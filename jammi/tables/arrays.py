"""Arrow arrays built straight from numpy buffers and Python strings, and the two compute
kernels a search needs (take, cast), called without loading what a `jammi search` need not.

pyarrow's `pa.array()` imports pandas the first time it is called (to test whether its argument
is a pandas object): a quarter of a second; the builders here never do (no nulls). The module
pyarrow.compute, which `Table.take` and `.cast` load, builds Python wrappers for every kernel at
import (30-40 ms); `take` and `cast` here call the same kernels through `call_function` from
pyarrow's compiled module (the function pyarrow.compute re-exports), which loads in 5 ms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

try:
    from pyarrow._compute import CastOptions, call_function
except ImportError:  # a pyarrow that moved its compiled module: the public one has both
    from pyarrow.compute import CastOptions, call_function


def take(data: pa.Table | pa.Array | pa.ChunkedArray, indices: pa.Array):
    """`data.take(indices)`: the rows at those positions, in that order."""
    return call_function("take", [data, indices])


def cast(data: pa.Array | pa.ChunkedArray, to: pa.DataType):
    """`data.cast(to)`, safe (a value that does not fit raises)."""
    return call_function("cast", [data], CastOptions.safe(to))


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
