"""The IO manager through which every frame asset's rows reach the assets downstream."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from jammi.tables.frames import load_frame, store_frame


class FrameIOManager(dg.ConfigurableIOManager):
    """DataFrames as `{artifact_dir}/frames/<asset>.parquet`, written atomically, each
    registered as the view `jammi.<asset>` in the catalog; a partition's as
    `frames/<asset>/<partition>.parquet`. Also reads the frames the engine writes itself
    (raw_, validated_, quarantine_) as inputs of the assets that take them whole (fusion)."""

    artifact_dir: str

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        unique_key = (context.definition_metadata or {}).get("unique_key")
        path = store_frame(Path(self.artifact_dir), context.asset_key.to_user_string(), obj,
                           partition=partition, unique_key=unique_key)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        """The stored frame of the input's asset (one partition's, when the input is one)."""
        one = context.has_asset_partitions and len(context.asset_partition_keys) == 1
        return load_frame(Path(self.artifact_dir), context.asset_key.to_user_string(),
                          partition=context.asset_partition_key if one else None)
