"""Bronze: one `raw_<source>` asset per declared source."""

import dagster as dg

from jammi import keys
from jammi.app.sources import extract_raw, extract_raw_partition
from jammi.spec.project import Project
from jammi_assets.metadata import frame_metadata
from jammi_assets.partitions import source_partitions


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
    def _raw(context: dg.AssetExecutionContext):
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
