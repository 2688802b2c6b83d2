"""Asset frames (raw_, validated_, quarantine_, fused_...) kept as Parquet under the artifact
directory's frames/ folder, each one also a view `jammi.<asset>` in the catalog."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from jammi.errors import ArtifactError
from jammi.storage import ensure_writable, frame_path, write_parquet_atomic
from jammi.tables.catalog import Catalog


def store_frame(artifact_dir: Path, asset: str, frame: pd.DataFrame) -> Path:
    """Write `frame` atomically and point the catalog view `jammi.<asset>` at it."""
    path = frame_path(artifact_dir, asset)
    ensure_writable(path.parent, f"asset {asset!r}")
    write_parquet_atomic(frame, path)
    Catalog(artifact_dir).register_output(asset, path, len(frame))
    return path


def load_frame(artifact_dir: Path, asset: str, columns: list[str] | None = None) -> pd.DataFrame:
    path = frame_path(artifact_dir, asset)
    if not path.exists():
        raise ArtifactError(f"asset {asset!r} has no stored output at {path}; materialize it first")
    return pd.read_parquet(path, columns=columns)
