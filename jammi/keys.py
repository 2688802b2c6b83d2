"""Asset names, made in one place, and "the assets of X" for a source, entity or pipeline.

The Dagster definitions, the CLI's `--select`, the sensors and the catalog views all name
assets through these functions, so a name never drifts between them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jammi.spec.project import Project

QUALITY_REPORT = "quality_report"


def raw(source: str) -> str:
    return f"raw_{source}"


def validated(source: str) -> str:
    return f"validated_{source}"


def quarantine(source: str) -> str:
    return f"quarantine_{source}"


def validate_step(source: str) -> str:
    """The one step that writes `validated_<source>` and `quarantine_<source>` together."""
    return f"validate_{source}"


def fused(entity: str) -> str:
    return f"fused_{entity}"


def fused_provenance(entity: str) -> str:
    return f"fused_{entity}_provenance"


def fused_links(entity: str) -> str:
    return f"fused_{entity}_links"


def fuse_step(entity: str) -> str:
    """The one step that writes an entity's fused rows, provenance and links together."""
    return f"fuse_{entity}"


CHUNKS_PREFIX = "chunks_"


def chunks(source: str) -> str:
    """The chunks of a chunked pipeline's source: `doc_id, chunk_id, ordinal, start, end, text`."""
    return f"{CHUNKS_PREFIX}{source}"


def embeddings(pipeline: str) -> str:
    """The pipeline's embedding-table asset, also the catalog view over its active table."""
    return f"{pipeline}_embeddings"


def ann_index(pipeline: str) -> str:
    return f"{pipeline}_ann_index"


def sink(pipeline: str, name: str) -> str:
    """A pipeline's serving sink (`sinks:` in jammi.yaml): `<pipeline>_<sink>`."""
    return f"{pipeline}_{name}"


def sink_assets(project: Project, pipeline: str) -> list[str]:
    return [sink(pipeline, name) for name in project.pipelines[pipeline].sinks]


def latest_embeddings_view(source: str) -> str:
    """The catalog view over the newest active table embedding `source`."""
    return f"{source}_latest_embeddings"


def silver_outputs(source: str) -> list[str]:
    return [validated(source), quarantine(source)]


def fused_outputs(entity: str) -> list[str]:
    return [fused(entity), fused_provenance(entity), fused_links(entity)]


def pipeline_assets(pipeline: str) -> list[str]:
    return [embeddings(pipeline), ann_index(pipeline)]


def frame_assets(project: Project, name: str) -> list[str]:
    """The assets that produce the rows of a source, or of a fused entity and its sources."""
    entity = project.entity_of(name)
    if entity is None:
        return [raw(name), *silver_outputs(name)]
    members = [a for s in project.entities[entity].sources for a in frame_assets(project, s)]
    return members + fused_outputs(entity)


def chunk_assets(project: Project, pipeline: str) -> list[str]:
    """`chunks_<source>` of a chunked pipeline; nothing for another."""
    pipe = project.pipelines[pipeline]
    return [chunks(pipe.source)] if pipe.chunking else []


def assets_of(project: Project, name: str) -> list[str]:
    """A source or entity: its frame assets and every pipeline over it. A pipeline: its
    source's frame assets, its table, its index and its sinks. Anything else: nothing."""
    chosen: list[str] = []
    if name in project.sources or name in project.entities:
        chosen += frame_assets(project, name)
        for pipeline in project.pipelines_of(name):
            chosen += chunk_assets(project, pipeline) + pipeline_assets(pipeline)
            chosen += sink_assets(project, pipeline)
    if name in project.pipelines:
        chosen += frame_assets(project, project.pipelines[name].source)
        chosen += chunk_assets(project, name) + pipeline_assets(name) + sink_assets(project, name)
    return list(dict.fromkeys(chosen))


CATALOG_NAMES = ("embedding_tables", "active_tables", "table_versions", "refresh_log", "asset_outputs",
                 "embedding_status")


def declared_names(sources, entities, pipelines) -> dict[str, list[str]]:
    """Every asset and catalog view name a project makes -> the declarations that make it; a
    name made twice would make one view or asset answer for two things."""
    made: dict[str, list[str]] = {}

    def add(name: str, by: str) -> None:
        made.setdefault(name, []).append(by)

    for name in CATALOG_NAMES + (QUALITY_REPORT,):
        add(name, "Jammi's catalog")
    for source in sources:
        for name in (raw(source), validate_step(source), *silver_outputs(source),
                     latest_embeddings_view(source)):
            add(name, f"sources.{source}")
    for entity in entities:
        for name in (fuse_step(entity), *fused_outputs(entity), latest_embeddings_view(fused(entity))):
            add(name, f"entities.{entity}")
    for pipeline, pipe in pipelines.items():
        for name in pipeline_assets(pipeline):
            add(name, f"pipelines.{pipeline}")
        for name in pipe.sinks:
            add(sink(pipeline, name), f"pipelines.{pipeline}.sinks")
        if pipe.chunking and len(made.get(chunks(pipe.source), [])) == 0:
            for name in (chunks(pipe.source), latest_embeddings_view(chunks(pipe.source))):
                add(name, f"pipelines.{pipeline}")
    return made
