"""Files under the artifact directory: where frames live, and writes that are atomic (a
temporary file beside the target, then one rename), so a reader never sees half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from jammi.errors import ArtifactError

if TYPE_CHECKING:
    import pandas as pd

FRAMES_DIR = "frames"


def frame_path(artifact_dir: Path, asset_name: str) -> Path:
    """Where the frame of an asset (raw_, validated_, quarantine_, fused_...) is kept."""
    return Path(artifact_dir) / FRAMES_DIR / f"{asset_name}.parquet"


def partition_path(artifact_dir: Path, asset_name: str, partition: str) -> Path:
    """Where one partition of a partitioned asset's frame is kept (its folder holds them all)."""
    return partition_dir(artifact_dir, asset_name) / f"{quote(partition, safe='-_.:@ ')}.parquet"


def partition_dir(artifact_dir: Path, asset_name: str) -> Path:
    """The folder of a partitioned asset's partition files."""
    return Path(artifact_dir) / FRAMES_DIR / asset_name


def stored_frame(artifact_dir: Path, asset_name: str) -> Path | None:
    """What holds an asset's stored rows: its Parquet file, or the folder of its partition files
    (DuckDB reads it as `<folder>/*.parquet`, pyarrow and pandas as a dataset); None when
    nothing was stored yet."""
    single = frame_path(artifact_dir, asset_name)
    if single.exists():
        return single
    folder = partition_dir(artifact_dir, asset_name)
    return folder if folder.is_dir() and any(folder.glob("*.parquet")) else None


FRAME_META = "_frame.json"  # beside a partitioned asset's files: its unique key


def partition_key_of(folder: Path) -> str | None:
    """The unique key a partitioned asset's folder declares (None: rows are not deduplicated)."""
    try:
        return json.loads((Path(folder) / FRAME_META).read_text(encoding="utf-8")).get("unique_key")
    except (OSError, ValueError):
        return None


def parquet_glob(path: Path) -> str:
    """`path` as DuckDB's read_parquet takes it: a file, or every Parquet file of a folder."""
    return str(Path(path) / "*.parquet") if Path(path).is_dir() else str(path)


def tmp_path(path: Path) -> Path:
    """The hidden temporary file a write goes to before its rename onto `path`."""
    return path.parent / f".{path.name}.tmp"


def write_json_atomic(path: Path, payload: dict) -> None:
    tmp = tmp_path(path)
    tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def ensure_writable(directory: Path, who: str) -> None:
    """Fail early, naming the source, when the artifact directory cannot take files."""
    probe = directory / f".write-probe-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ArtifactError(
            f"{who}: artifact_dir {str(directory)!r} is not writable ({err.strerror or err}); "
            "set 'artifact_dir' in jammi.yaml to a writable directory"
        ) from None
