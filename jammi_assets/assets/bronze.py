"""Bronze: one `raw_<source>` asset per declared source."""

import dagster as dg

from jammi import keys
from jammi.app.sources import store_raw
from jammi.spec.project import Project
from jammi_assets.metadata import stored_metadata
from jammi_assets.partitions import source_partitions


class RawConfig(dg.Config):
    """Run configuration of a raw asset."""

    full: bool = False  # a watermark source: read every row, not only those past the watermark


def raw_asset(project: Project, name: str) -> dg.AssetsDefinition:
    spec = project.sources[name]
    where = spec.path or spec.table or "query"

    @dg.asset(
        name=keys.raw(name),
        group_name="bronze",
        kinds={spec.kind, "parquet"},
        description=spec.description or f"Source `{name}` extracted as-is from {spec.kind} ({where}).",
        metadata={"source": name, "kind": spec.kind, "key": spec.key},
        partitions_def=source_partitions(project, name),
    )
    def _raw(context: dg.AssetExecutionContext, config: RawConfig):
        # written batch by batch by the engine, so the run holds one batch whatever the source's size
        partition = context.partition_key if context.has_partition_key else None
        got = store_raw(project, name, context.run_id, config.full, partition)
        metadata = {**stored_metadata(got.path, got.rows, got.head), "unchanged_input": got.unchanged}
        if got.watermark is not None:  # pending until the run succeeds (jammi.ingest.watermark)
            mark = got.watermark
            context.log.info(f"source {name!r}: {mark.mode} extract ({mark.reason}): {mark.fetched} rows "
                             f"read, {mark.deleted} deleted, {got.rows} rows in all")
            return dg.MaterializeResult(metadata={**metadata, "extract": mark.mode,
                                                  "rows_fetched": mark.fetched, "rows_deleted": mark.deleted})
        if partition is None:
            context.log.info(f"source {name!r}: extracted {got.rows} rows")
            return dg.MaterializeResult(metadata=metadata)
        context.log.info(f"source {name!r}: extracted {got.rows} rows of partition {partition}")
        if got.unplaced:
            context.log.warning(f"source {name!r}: {got.unplaced} row(s) have no readable "
                                f"{spec.partitions.by} and fall in no partition")
        return dg.MaterializeResult(metadata={**metadata, "rows_in_no_partition": got.unplaced})

    return _raw
