"""Bronze: one `raw_<source>` asset per declared source."""

import dagster as dg

from jammi_assets.config import Project
from jammi_assets.metadata import frame_metadata
from jammi_assets.sources.extract import extract
from resources.artifacts import ArtifactStore, ensure_writable


def raw_asset(project: Project, name: str) -> dg.AssetsDefinition:
    spec = project.sources[name]
    where = spec.path or spec.table or "query"

    @dg.asset(
        name=f"raw_{name}",
        group_name="bronze",
        kinds={spec.kind, "pandas"},
        io_manager_key="frame_io",
        description=spec.description or f"Source `{name}` extracted as-is from {spec.kind} ({where}).",
        metadata={"source": name, "kind": spec.kind, "key": spec.key},
    )
    def _raw(context: dg.AssetExecutionContext, artifacts: ArtifactStore):
        ensure_writable(artifacts.path, f"source {name!r}")
        df = extract(project, name)
        context.log.info(f"source {name!r}: extracted {len(df)} rows")
        return dg.Output(df, metadata=frame_metadata(df))

    return _raw
