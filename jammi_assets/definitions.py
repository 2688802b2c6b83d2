"""The code location. `defs` loads the defs folder, whose one component (jammi_assets.component)
builds everything from jammi.yaml; `build_definitions` is that factory, also used by the CLI's
runner and the tests."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from jammi.spec.project import Project
from jammi_assets.assets.bronze import raw_asset
from jammi_assets.assets.embeddings import embeddings_asset
from jammi_assets.assets.indexes import ann_index_asset
from jammi_assets.assets.quality import quality_report_asset
from jammi_assets.assets.silver import validate_asset
from jammi_assets.automation import build_automation, with_freshness
from jammi_assets.executors import executor_from_env
from jammi_assets.io_manager import FrameIOManager
from resources.artifacts import ArtifactStore
from resources.embedding_model import EmbeddingModelResource


def build_assets(project: Project) -> list[dg.AssetsDefinition]:
    # the stream, fusion and chunking assets are imported only by a project that has them:
    # fusion brings scipy.sparse, every `jammi materialize` imports this module
    assets: list[dg.AssetsDefinition] = []
    streams = {n for n, s in project.sources.items() if s.kind == "nats"}
    if streams:
        from jammi_assets.assets.stream import stream_assets
    if project.entities:
        from jammi_assets.assets.fused import fused_asset
    if any(pipe.chunking for pipe in project.pipelines.values()):
        from jammi_assets.assets.chunks import chunks_asset
    if any(pipe.sinks for pipe in project.pipelines.values()):
        from jammi_assets.assets.sinks import sink_asset
    for name in project.sources:
        # a stream source's raw, silver and table assets are one micro-batch step
        assets += [stream_assets(project, name)] if name in streams else [
            raw_asset(project, name), validate_asset(project, name)]
    for entity in project.entities:
        assets.append(fused_asset(project, entity))
    for pipeline, pipe in project.pipelines.items():
        if pipe.chunking:
            assets.append(chunks_asset(project, pipe.source))
        if pipe.source not in streams:
            assets.append(embeddings_asset(project, pipeline))
        assets.append(ann_index_asset(project, pipeline))
        assets += [sink_asset(project, pipeline, sink) for sink in pipe.sinks]
    assets.append(quality_report_asset(project))
    return assets


def build_resources(project: Project, device: str = "auto") -> dict:
    artifact_dir = str(project.artifact_dir)
    return {
        "artifacts": ArtifactStore(artifact_dir=artifact_dir),
        "frame_io": FrameIOManager(artifact_dir=artifact_dir),
        "embedding_model": EmbeddingModelResource(device=device),
    }


def build_definitions(project: Project) -> dg.Definitions:
    assets = with_freshness(project, build_assets(project))
    automation = build_automation(project, assets)
    return dg.Definitions(
        assets=assets,
        resources=build_resources(project),
        jobs=automation.jobs,
        schedules=automation.schedules,
        sensors=automation.sensors,
        executor=executor_from_env(project),  # $JAMMI_EXECUTOR; None: Dagster's default
    )


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
