"""Asset frames (raw_, validated_, quarantine_, fused_...) kept as Parquet under the shared
frames/ folder (the artifact directory's, or its object-store URL's: jammi.shared), each one
also a view `jammi.<asset>` in the catalog.

A partitioned asset keeps one file per partition under frames/<asset>/ and nothing else: a
partition's run writes its own file and no other, so its cost does not grow with the number of
partitions. Readers of the whole asset (the view, fusion, search, verify) read the folder as one
dataset; with a unique key, a key found in several partitions shows its row from the latest
partition (partition keys sort in time order).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from jammi import checksums, store
from jammi.errors import ArtifactError
from jammi.shared import (
    FRAME_META,
    frame_path,
    is_folder,
    partition_files,
    partition_key_of,
    partition_of,
    partition_path,
    read_frame,
    stored_frame,
    write_frame,
    write_json,
)
from jammi.storage import ensure_writable
from jammi.store import Location
from jammi.tables.catalog import Catalog


def store_frame(artifact_dir: Path, asset: str, frame: pd.DataFrame, partition: str | None = None,
                unique_key: str | None = None) -> Location:
    """Write `frame` atomically and point the catalog view `jammi.<asset>` at it (at the folder
    of the partitions, for a partition)."""
    path = frame_path(artifact_dir, asset) if partition is None else partition_path(artifact_dir, asset,
                                                                                    partition)
    if not store.is_url(path):
        ensure_writable(Path(path).parent, f"asset {asset!r}")
    digest = write_frame(frame, path)
    register_frame(artifact_dir, asset, path, len(frame), partition, unique_key, digest)
    return path


def register_frame(artifact_dir: Path, asset: str, path: Location, rows: int, partition: str | None = None,
                   unique_key: str | None = None, digest: str | None = None) -> None:
    """Record a written frame file in the catalog (its view), a partition's as its folder, with
    the `digest` of its bytes (FrameWriter.digest) that readers compare it with
    (jammi.tables.frame_checksums)."""
    if digest is not None:
        checksums.written(path, digest)
    if partition is None:
        Catalog(artifact_dir).register_output(asset, path, rows, digest=digest)
        return
    folder = store.parent_of(path)
    meta = store.join(folder, FRAME_META)
    if not store.exists(meta) or unique_key != partition_key_of(folder):
        write_json(meta, {"unique_key": unique_key})
    Catalog(artifact_dir).register_output(asset, folder, rows, file=path, digest=digest)


def stored_partitions(folder: Location) -> list[tuple[str, Location]]:
    """(partition key, file) of every stored partition of a partitioned asset's folder."""
    return [(partition_of(f), f) for f in partition_files(folder)]


def load_frame(artifact_dir: Path, asset: str, columns: list[str] | None = None,
               partition: str | None = None) -> pd.DataFrame:
    """The asset's stored rows: one partition's, or the whole asset (every partition's)."""
    if partition is not None:
        path = partition_path(artifact_dir, asset, partition)
        if not store.exists(path):
            raise ArtifactError(f"asset {asset!r} partition {partition!r} has no stored output at {path}; "
                                "materialize it first")
        return read_frame(path, columns)
    found = stored_frame(artifact_dir, asset)
    if found is None:
        raise ArtifactError(f"asset {asset!r} has no stored output at {frame_path(artifact_dir, asset)}; "
                            "materialize it first")
    if not is_folder(found):
        return read_frame(found, columns)
    return whole_partitions(found, columns)


def whole_partitions(folder: Location, columns: list[str] | None = None) -> pd.DataFrame:
    """Every partition file of `folder` as one frame, in partition order; with the folder's
    unique key, a key in several partitions keeps its row from the latest one."""
    key = partition_key_of(folder)
    wanted = None if columns is None else list(dict.fromkeys([*columns, *([key] if key else [])]))
    frames = [read_frame(f, wanted) for f in partition_files(folder)]
    frames = [f for f in frames if len(f.columns)]
    union = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if key and key in union.columns and len(union):
        union = union.drop_duplicates(subset=[key], keep="last").reset_index(drop=True)
    return union if columns is None else union[columns]
