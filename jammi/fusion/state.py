"""The fusion state kept between runs under `fusion/<entity>/` of the artifact directory or its
object-store URL (a shared folder: jammi.shared, so the next run may be another node's): the standardized
records with their entity ids, the fused entities and provenance, and the embedding cache
(text hash -> vector). It is saved only when the fused asset's blocking checks pass, so an
incremental run always builds on a run that was accepted.

Beside it, whatever the checks said, the latest run's review pairs (`pairs.parquet`: the pairs
`jammi fusion review` asks about, with their scores) and its fitted match models
(`models.json`: m, u and weights per field and level, per pair of sources)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from jammi import store
from jammi.fusion.fuse import REVIEW_COLUMNS, FusionResult, FusionState
from jammi.shared import read_frame, read_json, shared_path, write_file, write_frame, write_text
from jammi.store import Location

FUSION_DIR = "fusion"


def state_dir(artifact_dir: Path, entity: str) -> Location:
    return shared_path(artifact_dir, FUSION_DIR, entity)


def load_state(artifact_dir: Path, entity: str) -> FusionState | None:
    """The previous run's state, or None when any part is missing (then the run is full)."""
    base = state_dir(artifact_dir, entity)
    names = ("records.parquet", "vectors.parquet", "entities.parquet", "provenance.parquet")
    files = [store.join(base, n) for n in names]
    if not all(store.exists(f) for f in files):
        return None
    table = store.read_parquet(files[1])
    hashes = table.column("text_hash").to_pylist()
    flat = table.column("vector").combine_chunks()
    dim = flat.type.list_size if len(hashes) else 0
    matrix = flat.flatten().to_numpy(zero_copy_only=False).reshape(len(hashes), dim) if len(hashes) else []
    return FusionState(
        records=read_frame(files[0]),
        entities=read_frame(files[2]),
        provenance=read_frame(files[3]),
        vectors={h: np.asarray(v, dtype=np.float32) for h, v in zip(hashes, matrix, strict=True)},
    )


def save_state(artifact_dir: Path, entity: str, result: FusionResult) -> None:
    base = state_dir(artifact_dir, entity)
    write_frame(result.records, store.join(base, "records.parquet"))
    write_frame(result.entities, store.join(base, "entities.parquet"))
    write_frame(result.provenance, store.join(base, "provenance.parquet"))
    hashes = list(result.vectors)
    dim = len(next(iter(result.vectors.values()))) if hashes else 1
    flat = np.stack([result.vectors[h] for h in hashes]).astype(np.float32).ravel() if hashes \
        else np.zeros(0, np.float32)
    table = pa.table({"text_hash": pa.array(hashes, pa.string()),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)})
    write_file(store.join(base, "vectors.parquet"), lambda tmp: pq.write_table(table, tmp))


def save_review(artifact_dir: Path, entity: str, result: FusionResult) -> None:
    base = state_dir(artifact_dir, entity)
    pairs = result.pairs.reset_index(drop=True)
    shown = pd.concat([pairs[["left_source", "left_id"]].set_axis(["_source", "_record_id"], axis=1),
                       pairs[["right_source", "right_id"]].set_axis(["_source", "_record_id"], axis=1)])
    records = result.records.astype({"_record_id": str}).merge(shown.drop_duplicates(),
                                                               on=["_source", "_record_id"])
    write_frame(records, store.join(base, "pair_records.parquet"))
    write_frame(pairs, store.join(base, "pairs.parquet"))
    text = json.dumps(result.models, indent=2) + "\n"
    write_text(store.join(base, "models.json"), text)


def load_review(artifact_dir: Path, entity: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The latest run's review pairs and the standardized records they name; None before any run."""
    base = state_dir(artifact_dir, entity)
    pairs, records = store.join(base, "pairs.parquet"), store.join(base, "pair_records.parquet")
    if not store.exists(pairs) or not store.exists(records):
        return None
    frame = read_frame(pairs)
    for column in REVIEW_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    return frame, read_frame(records)


def load_models(artifact_dir: Path, entity: str) -> dict:
    return read_json(store.join(state_dir(artifact_dir, entity), "models.json")) or {}
