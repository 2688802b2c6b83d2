"""Bronze: one `raw_<source>` asset per declared source."""

import dagster as dg

from jammi import keys
from jammi.app.sources import extract_raw
from jammi.spec.project import Project
from jammi_assets.metadata import frame_metadata


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
    )
    def _raw(context: dg.AssetExecutionContext):
        df = extract_raw(project, name)
        context.log.info(f"source {name!r}: extracted {len(df)} rows")
        return dg.Output(df, metadata=frame_metadata(df))

    return _raw
