"""The IO manager through which every frame asset's rows reach the assets downstream."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from jammi.tables.frames import load_frame, store_frame


class FrameIOManager(dg.ConfigurableIOManager):
    """DataFrames as `{artifact_dir}/frames/<asset>.parquet`, written atomically, each
    registered as the view `jammi.<asset>` in the catalog; a partition's as
    `frames/<asset>/<partition>.parquet`, with the union of the partitions as the asset's file."""

    artifact_dir: str

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        unique_key = (context.definition_metadata or {}).get("unique_key")
        path = store_frame(Path(self.artifact_dir), context.asset_key.to_user_string(), obj,
                           partition=partition, unique_key=unique_key)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        return load_frame(Path(self.artifact_dir), context.upstream_output.asset_key.to_user_string(),
                          partition=partition)
