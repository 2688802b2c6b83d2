"""The IO manager through which every frame asset's rows reach the assets downstream."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from jammi.tables.frames import load_frame, store_frame


class FrameIOManager(dg.ConfigurableIOManager):
    """DataFrames as `{artifact_dir}/frames/<asset>.parquet`, written atomically, each
    registered as the view `jammi.<asset>` in the catalog."""

    artifact_dir: str

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        path = store_frame(Path(self.artifact_dir), context.asset_key.to_user_string(), obj)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        return load_frame(Path(self.artifact_dir), context.upstream_output.asset_key.to_user_string())
