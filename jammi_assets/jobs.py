"""The code location's asset jobs: one per source, `<source>_job` (its raw_/validated_/
quarantine_ assets, the pipelines over it and anything else downstream in the same partitions),
carrying the source's partitions; and `jammi_all`, every unpartitioned asset.

Dagster refuses one job over assets with different partitions definitions ("Selected assets
must have the same partitions definitions"), so a project with partitioned sources cannot have a
job over everything; `jammi_all` is then the unpartitioned rest (fused entities, the quality
report, unpartitioned sources), and every asset belongs to at least one job."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from jammi import keys
from jammi.spec.project import Project

ALL_ASSETS_JOB = "jammi_all"
SOURCE_TAG = "jammi/source"
PARTITION_TAG = "jammi/partition"


def source_job_name(source: str) -> str:
    return f"{source}_job"


@dataclass
class AssetGraph:
    """Asset name -> its upstream asset names, -> its partitions (None: unpartitioned), and
    -> its step, for assets of a step that cannot run them apart (validated_ and quarantine_)."""

    upstream: dict[str, set[str]]
    partitions: dict[str, dg.PartitionsDefinition | None]
    steps: dict[str, str]

    @classmethod
    def of(cls, assets: list[dg.AssetsDefinition]) -> AssetGraph:
        upstream: dict[str, set[str]] = {}
        partitions: dict[str, dg.PartitionsDefinition | None] = {}
        steps: dict[str, str] = {}
        for a in assets:
            for key, deps in a.asset_deps.items():
                upstream[key.to_user_string()] = {d.to_user_string() for d in deps}
                partitions[key.to_user_string()] = a.specs_by_key[key].partitions_def
                if not a.can_subset and len(a.keys) > 1:
                    steps[key.to_user_string()] = a.node_def.name
        return cls(upstream, partitions, steps)

    def downstream(self, name: str) -> set[str]:
        return {n for n, ups in self.upstream.items() if name in ups}


def source_job_assets(project: Project, source: str, graph: AssetGraph) -> list[str]:
    """A source's assets, the pipelines over it, and (for a partitioned source) every asset
    downstream of them in the same partitions."""
    chosen = [a for a in keys.assets_of(project, source) if a in graph.upstream]
    partitions = graph.partitions.get(keys.raw(source))
    if partitions is None:
        return chosen
    todo = list(chosen)
    while todo:
        for child in sorted(graph.downstream(todo.pop())):
            if child not in chosen and graph.partitions.get(child) == partitions:
                chosen.append(child)
                todo.append(child)
    return chosen


def unpartitioned_assets(graph: AssetGraph) -> list[str]:
    return [name for name, p in graph.partitions.items() if p is None]


def job_assets(project: Project, graph: AssetGraph) -> dict[str, list[str]]:
    """Job name -> the asset names it selects."""
    jobs = {ALL_ASSETS_JOB: unpartitioned_assets(graph)}
    for source in project.sources:
        jobs[source_job_name(source)] = source_job_assets(project, source, graph)
    return jobs


def build_jobs(project: Project, assets: list[dg.AssetsDefinition]) -> list[dg.UnresolvedAssetJobDefinition]:
    graph = AssetGraph.of(assets)
    selected = job_assets(project, graph)
    jobs = [dg.define_asset_job(ALL_ASSETS_JOB, selection=_selection(selected[ALL_ASSETS_JOB]),
                                description="Every unpartitioned asset of the project.")]
    for source in project.sources:
        jobs.append(dg.define_asset_job(
            source_job_name(source), selection=_selection(selected[source_job_name(source)]),
            description=f"Source `{source}`: its assets and the pipelines over it.",
            run_tags={SOURCE_TAG: source}))
    return jobs


def _selection(names: list[str]) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*[dg.AssetKey(n) for n in names])
