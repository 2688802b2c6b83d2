"""USearch HNSW sidecars: built from the Parquet table in record batches, loaded with
integrity checks so that a stale or corrupt sidecar is never trusted."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from usearch.index import Index

from jammi.embedding.vectors import vectors_of
from jammi.spec.project import IndexSpec
from jammi.storage import tmp_path
from jammi.tables.contract import sidecar

READ_BATCH = 8192


@dataclass(frozen=True)
class IndexStats:
    path: Path
    rows: int
    seconds: float
    bytes: int


def build_index(base: Path, dimensions: int, spec: IndexSpec) -> IndexStats:
    """Build `<base>.usearch` and `<base>.rowmap` from `<base>.parquet` (key = row position)."""
    t0 = time.perf_counter()
    pf = pq.ParquetFile(sidecar(base, ".parquet"))
    index = Index(
        ndim=dimensions,
        metric=spec.metric,
        dtype=spec.dtype,
        connectivity=spec.connectivity,
        expansion_add=spec.expansion_add,
        expansion_search=spec.expansion_search,
    )
    row_ids: list[pa.Array] = []
    offset = 0
    for batch in pf.iter_batches(batch_size=READ_BATCH, columns=["_row_id", "vector"]):
        vecs = vectors_of(batch.column("vector"), dimensions)
        keys = np.arange(offset, offset + len(vecs), dtype=np.uint64)
        index.add(keys, vecs, threads=os.cpu_count() or 1)
        row_ids.append(batch.column("_row_id"))
        offset += len(vecs)
    index_path = sidecar(base, ".usearch")
    tmp = tmp_path(index_path)
    index.save(str(tmp))
    os.replace(tmp, index_path)
    rowmap = pa.table({"_row_id": pa.concat_arrays(row_ids) if row_ids else pa.array([], pa.string())})
    rowmap_path = sidecar(base, ".rowmap")
    tmp = tmp_path(rowmap_path)
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, rowmap.schema) as writer:
        writer.write_table(rowmap)
    os.replace(tmp, rowmap_path)
    return IndexStats(index_path, offset, time.perf_counter() - t0, index_path.stat().st_size)


class SidecarUnusable(Exception):
    """The sidecar is missing, corrupt or out of step with the Parquet table."""


def load_index(base: Path, expected_rows: int, spec: IndexSpec | None = None) -> tuple[Index, pa.Array]:
    index_path, rowmap_path = sidecar(base, ".usearch"), sidecar(base, ".rowmap")
    if not index_path.exists() or not rowmap_path.exists():
        raise SidecarUnusable("sidecar files are missing")
    try:
        index = Index.restore(str(index_path), view=True)
        if index is None:
            raise SidecarUnusable(f"{index_path.name} is not a USearch index")
        with pa.memory_map(str(rowmap_path)) as source:
            rowmap = pa.ipc.open_file(source).read_all().column("_row_id").combine_chunks()
    except SidecarUnusable:
        raise
    except Exception as err:  # usearch and Arrow raise assorted types on damaged files
        raise SidecarUnusable(f"cannot read sidecars: {err}") from None
    if len(index) != expected_rows or len(rowmap) != expected_rows:
        raise SidecarUnusable(
            f"sidecars hold {len(index)} vectors / {len(rowmap)} row ids, table has {expected_rows}"
        )
    if spec is not None:
        index.expansion_search = spec.expansion_search
    return index, rowmap
