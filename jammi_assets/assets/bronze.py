"""Bronze: one `raw_<source>` asset per declared source."""

import dagster as dg

from jammi import keys
from jammi.app.sources import extract_raw, extract_raw_partition, extract_watermarked
from jammi.spec.project import Project
from jammi_assets.metadata import frame_metadata
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
        kinds={spec.kind, "pandas"},
        io_manager_key="frame_io",
        description=spec.description or f"Source `{name}` extracted as-is from {spec.kind} ({where}).",
        metadata={"source": name, "kind": spec.kind, "key": spec.key},
        partitions_def=source_partitions(project, name),
    )
    def _raw(context: dg.AssetExecutionContext, config: RawConfig):
        if spec.watermark:  # pending until the run succeeds (jammi.ingest.watermark)
            got = extract_watermarked(project, name, context.run_id, config.full)
            context.log.info(f"source {name!r}: {got.mode} extract ({got.reason}): {got.fetched} rows "
                             f"read, {got.deleted} deleted, {len(got.rows)} rows in all")
            return dg.Output(got.rows, metadata={**frame_metadata(got.rows), "extract": got.mode,
                                                 "rows_fetched": got.fetched, "rows_deleted": got.deleted})
        if not context.has_partition_key:
            df = extract_raw(project, name)
            context.log.info(f"source {name!r}: extracted {len(df)} rows")
            return dg.Output(df, metadata=frame_metadata(df))
        part = extract_raw_partition(project, name, context.partition_key)
        context.log.info(f"source {name!r}: extracted {len(part.rows)} rows of partition "
                         f"{context.partition_key}")
        if part.unplaced:
            context.log.warning(f"source {name!r}: {part.unplaced} row(s) have no readable "
                                f"{spec.partitions.by} and fall in no partition")
        return dg.Output(part.rows, metadata={**frame_metadata(part.rows),
                                              "rows_in_no_partition": part.unplaced})

    return _raw
