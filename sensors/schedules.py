"""`<name>_refresh`: the schedule of a source or pipeline that declares `refresh: {cron, timezone}`.

A time-partitioned source runs the partition that closed last before the tick (run key = the
partition key, so each closed partition runs once however often the cron fires); a source with
dynamic partitions runs each of its partitions; an unpartitioned one runs its assets. A pipeline's
schedule runs its source's assets and the pipeline's table and index. Declared schedules start
RUNNING."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import dagster as dg

from jammi import keys
from jammi.spec.automation import RefreshSpec
from jammi.spec.project import Project
from jammi_assets.jobs import ALL_ASSETS_JOB, PARTITION_TAG, SOURCE_TAG, source_job_name
from jammi_assets.partitions import source_partitions

SCHEDULE_TAG = "jammi/schedule"


@dataclass(frozen=True)
class RefreshTarget:
    """What one schedule runs: `assets` of `job`, partitioned like `source` (None: an entity)."""

    name: str
    source: str | None
    job: str
    assets: tuple[str, ...]
    refresh: RefreshSpec


def schedule_name(name: str) -> str:
    return f"{name}_refresh"


def refresh_targets(project: Project) -> list[RefreshTarget]:
    """One target per source and pipeline that declares `refresh`. A pipeline that shares its
    name with a source that also declares one is `<pipeline>_pipeline_refresh`."""
    targets = []
    for name, spec in project.sources.items():
        if spec.refresh is not None:
            targets.append(RefreshTarget(schedule_name(name), name, source_job_name(name),
                                         tuple(keys.assets_of(project, name)), spec.refresh))
    taken = {t.name for t in targets}
    for name, pipe in project.pipelines.items():
        if pipe.refresh is None:
            continue
        source = pipe.source if pipe.source in project.sources else None
        job = source_job_name(source) if source else ALL_ASSETS_JOB
        assets = keys.assets_of(project, name)
        if source is None:  # an entity's: jammi_all holds none of its members' partitioned assets
            partitioned = {a for s, spec in project.sources.items() if spec.partitions
                           for a in keys.frame_assets(project, s)}
            assets = [a for a in assets if a not in partitioned]
        schedule = schedule_name(name)
        if schedule in taken:
            schedule = schedule_name(f"{name}_pipeline")
        targets.append(RefreshTarget(schedule, source, job, tuple(assets), pipe.refresh))
    return targets


def closed_partition(partitions: dg.TimeWindowPartitionsDefinition, at: datetime) -> str | None:
    """The key of the last time window that ended at or before `at` (None: none has yet)."""
    with dg.partition_loading_context(effective_dt=at):
        return partitions.get_last_partition_key()


def run_requests(target: RefreshTarget, partitions: dg.PartitionsDefinition | None,
                 context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
    selection = [dg.AssetKey(a) for a in target.assets]
    tags = {SCHEDULE_TAG: target.name, **({SOURCE_TAG: target.source} if target.source else {})}
    if partitions is None:
        return [dg.RunRequest(asset_selection=selection, tags=tags)]
    if isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        key = closed_partition(partitions, context.scheduled_execution_time)
        if key is None:
            return dg.SkipReason(f"no partition of source {target.source!r} has closed yet")
        run_keys = {key: key}  # each closed window once, however often the cron fires
    else:
        tick = context.scheduled_execution_time.isoformat()
        run_keys = {k: f"{k}@{tick}" for k in
                    partitions.get_partition_keys(dynamic_partitions_store=context.instance)}
        if not run_keys:
            return dg.SkipReason(f"source {target.source!r} has no partitions yet")
    return [dg.RunRequest(run_key=run_key, partition_key=key, asset_selection=selection,
                          tags={**tags, PARTITION_TAG: key}) for key, run_key in run_keys.items()]


def build_refresh_schedule(project: Project, target: RefreshTarget) -> dg.ScheduleDefinition:
    partitions = source_partitions(project, target.source) if target.source else None

    @dg.schedule(
        name=target.name,
        cron_schedule=target.refresh.cron,
        execution_timezone=target.refresh.timezone,
        job_name=target.job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(f"Declared `refresh: {{cron: \"{target.refresh.cron}\"}}` "
                     f"({target.refresh.timezone})"
                     + (": runs the partition that closed last." if isinstance(
                         partitions, dg.TimeWindowPartitionsDefinition) else ".")),
    )
    def _refresh(context: dg.ScheduleEvaluationContext):
        return run_requests(target, partitions, context)

    return _refresh


def build_refresh_schedules(project: Project) -> list[dg.ScheduleDefinition]:
    return [build_refresh_schedule(project, t) for t in refresh_targets(project)]
