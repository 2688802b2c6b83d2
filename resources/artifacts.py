"""The artifact store: the project's artifact directory, its catalog, and the IO manager
that keeps every frame asset as Parquet there with a DuckDB view over it."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pandas as pd

from jammi_assets.catalog.recovery import RecoveryAction, recover
from jammi_assets.catalog.store import Catalog, frame_path
from jammi_assets.embeddings.table import tmp_path
from jammi_assets.errors import ArtifactError


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


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


class ArtifactStore(dg.ConfigurableResource):
    """Where embedding tables, frames and the catalog live."""

    artifact_dir: str

    @property
    def path(self) -> Path:
        return Path(self.artifact_dir)

    def catalog(self) -> Catalog:
        return Catalog(self.path)

    def recover(self) -> list[RecoveryAction]:
        return recover(self.catalog())

    def frame_path(self, asset_name: str) -> Path:
        return frame_path(self.path, asset_name)


class FrameIOManager(dg.ConfigurableIOManager):
    """DataFrames as `{artifact_dir}/frames/<asset>.parquet`, written atomically, each
    registered as the view `jammi.<asset>` in the catalog."""

    artifact_dir: str

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        name = context.asset_key.to_user_string()
        path = frame_path(Path(self.artifact_dir), name)
        ensure_writable(path.parent, f"asset {name!r}")
        write_parquet_atomic(obj, path)
        Catalog(Path(self.artifact_dir)).register_output(name, path, len(obj))
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        name = context.upstream_output.asset_key.to_user_string()
        path = frame_path(Path(self.artifact_dir), name)
        if not path.exists():
            raise ArtifactError(f"asset {name!r} has no stored output at {path}; materialize it first")
        return pd.read_parquet(path)
