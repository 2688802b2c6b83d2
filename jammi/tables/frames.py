"""Asset frames (raw_, validated_, quarantine_, fused_...) kept as Parquet under the artifact
directory's frames/ folder, each one also a view `jammi.<asset>` in the catalog.

A partitioned asset keeps one file per partition under frames/<asset>/ and, beside them, the
union of its partitions as frames/<asset>.parquet, rewritten under a lock after each
partition's write, so everything downstream (embeddings, search, fusion, the view) reads the
whole source as for an unpartitioned one. With `unique_key`, a key found in several
partitions keeps its row from the latest partition (partition keys sort in time order).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from filelock import FileLock

from jammi.errors import ArtifactError
from jammi.storage import ensure_writable, frame_path, partition_path, write_parquet_atomic
from jammi.tables.catalog import Catalog

UNION_LOCK_WAIT_S = 600.0


def store_frame(artifact_dir: Path, asset: str, frame: pd.DataFrame, partition: str | None = None,
                unique_key: str | None = None) -> Path:
    """Write `frame` atomically and point the catalog view `jammi.<asset>` at it (at the union
    of the partitions, for a partition)."""
    path = frame_path(artifact_dir, asset)
    ensure_writable(path.parent, f"asset {asset!r}")
    if partition is None:
        write_parquet_atomic(frame, path)
        Catalog(artifact_dir).register_output(asset, path, len(frame))
        return path
    part = partition_path(artifact_dir, asset, partition)
    part.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(part.parent / ".union.lock"), timeout=UNION_LOCK_WAIT_S):
        write_parquet_atomic(frame, part)
        union = union_of(part.parent, unique_key)
        write_parquet_atomic(union, path)
    Catalog(artifact_dir).register_output(asset, path, len(union))
    return part


def union_of(folder: Path, unique_key: str | None = None) -> pd.DataFrame:
    """Every partition file under `folder`, in partition order."""
    frames = [pd.read_parquet(f) for f in sorted(folder.glob("*.parquet"))]
    frames = [f for f in frames if len(f.columns)]
    union = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if unique_key is not None and len(union):
        union = union.drop_duplicates(subset=[unique_key], keep="last").reset_index(drop=True)
    return union


def load_frame(artifact_dir: Path, asset: str, columns: list[str] | None = None,
               partition: str | None = None) -> pd.DataFrame:
    path = frame_path(artifact_dir, asset) if partition is None else partition_path(artifact_dir, asset,
                                                                                    partition)
    if not path.exists():
        which = "" if partition is None else f" partition {partition!r}"
        raise ArtifactError(f"asset {asset!r}{which} has no stored output at {path}; materialize it first")
    return pd.read_parquet(path, columns=columns)
