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
    """Where one partition of a partitioned asset's frame is kept; `frame_path` holds the union."""
    return Path(artifact_dir) / FRAMES_DIR / asset_name / f"{quote(partition, safe='-_.:@ ')}.parquet"


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
