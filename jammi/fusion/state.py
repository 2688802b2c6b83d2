"""The fusion state kept between runs under `{artifact_dir}/fusion/<entity>/`: the standardized
records with their entity ids, the fused entities and provenance, and the embedding cache
(text hash -> vector). It is saved only when the fused asset's blocking checks pass, so an
incremental run always builds on a run that was accepted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from jammi.fusion.fuse import FusionResult, FusionState
from jammi.storage import write_parquet_atomic

FUSION_DIR = "fusion"


def state_dir(artifact_dir: Path, entity: str) -> Path:
    return Path(artifact_dir) / FUSION_DIR / entity


def load_state(artifact_dir: Path, entity: str) -> FusionState | None:
    """The previous run's state, or None when any part is missing (then the run is full)."""
    base = state_dir(artifact_dir, entity)
    names = ("records.parquet", "vectors.parquet", "entities.parquet", "provenance.parquet")
    files = [base / n for n in names]
    if not all(f.exists() for f in files):
        return None
    table = pq.read_table(files[1])
    hashes = table.column("text_hash").to_pylist()
    flat = table.column("vector").combine_chunks()
    dim = flat.type.list_size if len(hashes) else 0
    matrix = flat.flatten().to_numpy(zero_copy_only=False).reshape(len(hashes), dim) if len(hashes) else []
    return FusionState(
        records=pd.read_parquet(files[0]),
        entities=pd.read_parquet(files[2]),
        provenance=pd.read_parquet(files[3]),
        vectors={h: np.asarray(v, dtype=np.float32) for h, v in zip(hashes, matrix, strict=True)},
    )


def save_state(artifact_dir: Path, entity: str, result: FusionResult) -> None:
    base = state_dir(artifact_dir, entity)
    base.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(result.records, base / "records.parquet")
    write_parquet_atomic(result.entities, base / "entities.parquet")
    write_parquet_atomic(result.provenance, base / "provenance.parquet")
    hashes = list(result.vectors)
    dim = len(next(iter(result.vectors.values()))) if hashes else 1
    flat = np.stack([result.vectors[h] for h in hashes]).astype(np.float32).ravel() if hashes \
        else np.zeros(0, np.float32)
    table = pa.table({"text_hash": pa.array(hashes, pa.string()),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)})
    tmp = base / "vectors.parquet.tmp"
    pq.write_table(table, tmp)
    tmp.replace(base / "vectors.parquet")
