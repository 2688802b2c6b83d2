"""Jobs, schedules, sensors and freshness policies made from what jammi.yaml declares
(`refresh`, `freshness`, `partitions`, `sensor`, file, PostgreSQL and stream sources)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import dagster as dg

from jammi import keys
from jammi.spec.automation import FreshnessSpec
from jammi.spec.project import Project
from jammi_assets.jobs import build_jobs
from sensors.schedules import build_refresh_schedules
from sensors.source_files import build_source_files_sensors
from sensors.stream import build_stream_sensors

WATERMARK_MODULE = "sensors.postgres_watermark"


@dataclass
class Automation:
    jobs: list = field(default_factory=list)
    schedules: list = field(default_factory=list)
    sensors: list = field(default_factory=list)


def watermark_sensors(project: Project) -> list[dg.SensorDefinition]:
    """The PostgreSQL watermark sensors (sensors.postgres_watermark.build_watermark_sensors),
    when that module is there."""
    if importlib.util.find_spec(WATERMARK_MODULE) is None:
        return []
    return importlib.import_module(WATERMARK_MODULE).build_watermark_sensors(project)


def build_automation(project: Project, assets: list[dg.AssetsDefinition]) -> Automation:
    return Automation(
        jobs=build_jobs(project, assets),
        schedules=build_refresh_schedules(project),
        sensors=(build_source_files_sensors(project) + watermark_sensors(project)
                 + build_stream_sensors(project)),
    )


def freshness_by_asset(project: Project) -> dict[str, FreshnessSpec]:
    """Asset name -> declared freshness: a source's applies to its assets and the pipelines over
    it; a pipeline's own applies to its table and index, over its source's."""
    declared: dict[str, FreshnessSpec] = {}
    for name, spec in project.sources.items():
        if spec.freshness is not None:
            declared.update(dict.fromkeys(keys.assets_of(project, name), spec.freshness))
    for name, pipe in project.pipelines.items():
        if pipe.freshness is not None:
            declared.update(dict.fromkeys(keys.pipeline_assets(name), pipe.freshness))
    return declared


def freshness_policy(spec: FreshnessSpec) -> dg.FreshnessPolicy:
    """Fails when the last materialization is older than `max_lag`, warns past `warn_lag`."""
    warn = spec.warn_lag_delta
    return dg.FreshnessPolicy.time_window(
        fail_window=spec.max_lag_delta,
        warn_window=warn if warn is not None and warn < spec.max_lag_delta else None)


def with_freshness(project: Project, assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """`assets` with the declared freshness policies on their specs (the UI shows stale assets)."""
    declared = freshness_by_asset(project)
    if not declared:
        return assets

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        found = declared.get(spec.key.to_user_string())
        return spec if found is None else spec.replace_attributes(freshness_policy=freshness_policy(found))

    return [a.map_asset_specs(apply) if any(k.to_user_string() in declared for k in a.keys) else a
            for a in assets]
