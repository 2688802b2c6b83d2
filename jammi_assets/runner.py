"""Running the asset graph from the CLI on the local Dagster instance, with compact
progress lines instead of Dagster's debug log, and a summary of what was made.

The selection becomes runs of the code location's jobs (jammi_assets.run_plan says which, in
what order; jammi_assets.launch makes them as the UI would, so the UI lists them under their
job, with `jammi/source` and `jammi/partition`, and can re-execute them). One run, or one
partition, runs in this process; several partitions are a backfill (a record on the UI's
backfills page, a run per key) whose runs Dagster's run workers execute, `workers` at a time."""

from __future__ import annotations

import atexit
import gc
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from jammi import keys
from jammi.errors import JammiError
from jammi.spec.project import PROJECT_ENV, Project
from jammi_assets import interrupts, launch, run_guard
from jammi_assets.instance import use_local_instance
from jammi_assets.jobs import PARTITION_TAG, SOURCE_TAG, AssetGraph
from jammi_assets.run_plan import PlannedRun, plan_runs

SUMMARY_KEYS = ("outcome", "added", "changed", "deleted", "unchanged", "rows_encoded", "version",
                "rows_quarantined", "rows_skipped", "rows_truncated", "rows_per_second", "table_name",
                "vectors", "build_seconds")


DEFAULT_WORKERS = 2


@dataclass
class Outcome:
    success: bool
    run_id: str  # the last run, or the backfill when the last batch was one
    summary: list[dict] = field(default_factory=list)
    error: str | None = None
    run_ids: list[str] = field(default_factory=list)
    backfill_ids: list[str] = field(default_factory=list)


class _ProgressHandler(logging.Handler):
    def __init__(self, echo: Callable[[str], None]):
        super().__init__(logging.DEBUG)
        self.echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        if event is None and record.levelno < logging.INFO:
            return
        if event is not None and event.event_type_value not in ("STEP_START", "STEP_SUCCESS",
                                                                  "STEP_FAILURE"):
            return
        message = meta.get("orig_message") or record.getMessage()
        if event is not None:
            message = {"STEP_START": "started", "STEP_SUCCESS": "done",
                       "STEP_FAILURE": "FAILED"}[event.event_type_value]
        self.echo(f"  {step:<28} {message}")


def _progress_logger(echo: Callable[[str], None]) -> dg.LoggerDefinition:
    @dg.logger(description="Compact progress lines for the jammi CLI.")
    def progress(_init_context):
        lg = logging.getLogger("jammi.progress")
        lg.handlers = [_ProgressHandler(echo)]
        lg.setLevel(logging.DEBUG)
        lg.propagate = False
        return lg

    return progress


def resolve_selection(project: Project, names: list[str],
                      assets: list[dg.AssetsDefinition]) -> list[dg.AssetKey]:
    """Asset names as-is; a source or entity name means its assets and every pipeline over it;
    a pipeline name means its source's assets and the pipeline's table and index. An asset
    that shares its step with others (validated_ and quarantine_, say) brings them along, as
    the UI does."""
    all_keys = {k.to_user_string() for a in assets for k in a.keys}
    chosen: list[str] = []
    for name in names:
        expanded = keys.assets_of(project, name)
        if not expanded and name not in all_keys:
            raise JammiError(f"--select {name!r}: not an asset, source, entity or pipeline "
                             f"(assets: {', '.join(sorted(all_keys))})")
        chosen += expanded or [name]
    for a in assets:
        names_of_step = sorted(k.to_user_string() for k in a.keys)
        if not a.can_subset and any(n in chosen for n in names_of_step):
            chosen += names_of_step
    return [dg.AssetKey(k) for k in dict.fromkeys(chosen)]


def _root_cause(error) -> str:
    while getattr(error, "cause", None) is not None:
        error = error.cause
    msg = (error.message or "").strip()
    return msg.split(": ", 1)[1] if msg.startswith(("jammi_assets.", "dagster.")) and ": " in msg else msg


def _settle(instance: dg.DagsterInstance, run_id: str) -> str:
    """After the run, whatever ended it: an unfinished run is marked failed, and every slot and
    queued claim it has is freed (a step that raised keeps its slot in Dagster's in-process
    executor). Returns what was done, for the interrupt message."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return "no run was started"
    if not run.is_finished:
        instance.report_run_failed(run, message="jammi materialize ended before the run finished "
                                                "(interrupted).")
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    status = instance.get_run_by_id(run_id).status.value
    return f"run {run_id} is {status}; its pool slots are free"


def _run_config(project: Project, job: dg.JobDefinition, assets: list[str], device: str,
                full: bool) -> dict:
    config: dict = {}
    if full:
        ops = {keys.embeddings(p): {"config": {"full": True}} for p in project.pipelines
               if keys.embeddings(p) in assets}
        ops.update({a: {"config": {"full": True}} for p in project.pipelines
                    for a in keys.sink_assets(project, p) if a in assets})
        if ops:
            config["ops"] = ops
    if device != "auto" and "embedding_model" in job.resource_defs:
        config["resources"] = {"embedding_model": {"config": {"device": device}}}
    return launch.run_config_for(job, config)


def _summary(instance: dg.DagsterInstance, run_ids: list[str]) -> list[dict]:
    rows = []
    for run_id in run_ids:
        for record in instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
            mat = record.event_log_entry.dagster_event.step_materialization_data.materialization
            meta = {k: v.value for k, v in mat.metadata.items()}
            details = ", ".join(f"{k}={meta[k]}" for k in SUMMARY_KEYS if k in meta)
            rows.append({"asset": mat.asset_key.to_user_string(), "partition": mat.partition,
                         "rows": meta.get("dagster/row_count", meta.get("vectors", "")),
                         "details": details, "metadata": meta})
    return rows


def _failure(instance: dg.DagsterInstance, run_ids: list[str]) -> str | None:
    """The first failed step's root cause (or the run's failure message) over `run_ids`."""
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is None or run.status == dg.DagsterRunStatus.SUCCESS:
            continue
        records = instance.get_records_for_run(run_id, of_type={
            dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}).records
        for record in records:
            event = record.event_log_entry.dagster_event
            if event.is_step_failure:
                where = f"{event.step_key}" + (f" [{run.tags[PARTITION_TAG]}]"
                                               if PARTITION_TAG in run.tags else "")
                return f"{where}: {_root_cause(event.step_failure_data.error)}"
        for record in records:
            return f"run {run_id}: {record.event_log_entry.message}"
        return f"run {run_id} is {run.status.value}"
    return None


class _Execution:
    """The runs of one `jammi materialize`, executed batch by batch."""

    def __init__(self, project: Project, defs: dg.Definitions, instance: dg.DagsterInstance,
                 echo: Callable[[str], None], device: str, full: bool, workers: int):
        self.project, self.defs, self.instance, self.echo = project, defs, instance, echo
        self.device, self.full, self.workers = device, full, workers
        self.run_ids: list[str] = []
        self.backfill_ids: list[str] = []
        self.live: list[str] = []  # runs started and not yet over
        self.workers_started: list[launch.Worker] = []

    def tags(self, planned: PlannedRun, key: str | None) -> dict[str, str]:
        tags = {run_guard.PID_TAG: run_guard.process_tag()}
        if planned.source:
            tags[SOURCE_TAG] = planned.source
        if key is not None:
            tags[PARTITION_TAG] = key
        return tags

    def run(self, planned: PlannedRun) -> bool:
        if not planned.keys:
            self.echo(f"source {planned.partitioned!r} has no partitions yet: nothing to run for "
                      f"{', '.join(planned.assets)}")
            return True
        job = self.defs.resolve_job_def(planned.job)
        selection = [dg.AssetKey(a) for a in planned.assets]
        config = _run_config(self.project, job, planned.assets, self.device, self.full)
        where = f" of {planned.partitioned}" if planned.partitioned else ""
        if len(planned.keys) == 1:
            key = planned.keys[0]
            run = launch.create_run(self.instance, job, selection, config, self.tags(planned, key), key)
            self.run_ids.append(run.run_id)
            self.echo(f"run {run.run_id}: {planned.job}" + (f", partition {key}{where}" if key else ""))
            self.live = [run.run_id]
            launch.execute_here(self.instance, job, run, {"jammi_progress": _progress_logger(self.echo)})
            self.live = []
            return self.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
        return self.backfill(planned, job, selection, config)

    def backfill(self, planned: PlannedRun, job: dg.JobDefinition, selection: list[dg.AssetKey],
                 config: dict) -> bool:
        backfill_id = launch.new_backfill_id()
        runs = [launch.create_run(self.instance, job, selection, config,
                                  {**self.tags(planned, key), **launch.backfill_tags(backfill_id)}, key)
                for key in planned.keys]
        title = f"jammi materialize: {planned.partitioned} {planned.keys[0]}...{planned.keys[-1]}"
        launch.add_backfill(self.instance, backfill_id, job, list(planned.keys), selection,
                            {SOURCE_TAG: planned.partitioned}, title)
        self.backfill_ids.append(backfill_id)
        self.run_ids += [r.run_id for r in runs]
        self.live = [r.run_id for r in runs]
        workers = max(1, min(self.workers, len(runs)))
        self.echo(f"backfill {backfill_id}: {planned.job}, {len(runs)} partitions of "
                  f"{planned.partitioned} ({planned.keys[0]} ... {planned.keys[-1]}), "
                  f"{workers} at a time")
        if workers == 1:
            progress = {"jammi_progress": _progress_logger(self.echo)}
            for run in runs:
                self.echo(f"run {run.run_id}: partition {run.tags[PARTITION_TAG]}")
                launch.execute_here(self.instance, job, run, progress)
        else:
            launch.execute_in_workers(
                self.instance, runs, workers, Path(os.environ["DAGSTER_HOME"]) / "jammi_workers",
                lambda r: r.status == dg.DagsterRunStatus.NOT_STARTED or self.echo(
                    f"  [{r.tags[PARTITION_TAG]}] run {r.run_id} {r.status.value}"),
                self.workers_started)
        self.live = []
        success = all(self.instance.get_run_by_id(r.run_id).status == dg.DagsterRunStatus.SUCCESS
                      for r in runs)
        launch.finish_backfill(self.instance, backfill_id, success)
        return success

    def settle(self) -> str:
        """Stop any worker, fail the runs that did not finish, free their slots."""
        launch.stop_workers(self.workers_started)
        for backfill_id in self.backfill_ids:
            launch.finish_backfill(self.instance, backfill_id, False)
        live = self.live or self.run_ids[-1:]
        if len(live) <= 1:
            return _settle(self.instance, live[0]) if live else "no run was started"
        settled = {r: _settle(self.instance, r) for r in live}
        done = [r for r in live if self.instance.get_run_by_id(r).status == dg.DagsterRunStatus.SUCCESS]
        summary = [f"{len(done)} of the backfill's {len(live)} runs had succeeded"] if done else []
        return "; ".join([settled[r] for r in live if r not in done] + summary)


def _skip_exit_collections() -> None:
    """At interpreter exit, collect the garbage once, then leave what is still alive out of
    the several full collections that tear the interpreter down: with Dagster's, pandas' and
    the definitions' object graphs those took most of a second after a `jammi materialize`
    had finished. Unreachable objects are still finalized (by the collection here), as are
    weakref.finalize callbacks and atexit handlers; Python does not promise to finalize the
    objects alive at exit, and what Jammi opens (catalog, Dagster storage) it closes itself."""
    gc.collect()
    gc.freeze()


def run_materialization(project: Project, select: list[str], device: str = "auto",
                        echo: Callable[[str], None] = print, full: bool = False,
                        partition: str | None = None, workers: int = DEFAULT_WORKERS) -> Outcome:
    """Materialize `select` (default: everything); `full` rebuilds embedding tables instead of
    refreshing them; `partition` is a key or `FIRST...LAST` of the selected partitioned sources
    (default: all their partitions); a range runs `workers` partitions at a time."""
    from jammi_assets.definitions import build_definitions

    atexit.unregister(_skip_exit_collections)  # once, however many runs this process makes
    atexit.register(_skip_exit_collections)
    os.environ[PROJECT_ENV] = str(project.path)  # the code location's project, in run workers too
    defs = build_definitions(project)
    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
    graph = AssetGraph.of(assets)
    chosen = ([k.to_user_string() for k in resolve_selection(project, select, assets)] if select
              else [k.to_user_string() for a in assets for k in a.keys])
    instance = use_local_instance(project)
    planned = plan_runs(project, graph, chosen, partition, instance)
    echo(f"materializing {len(chosen)} asset(s) of {project.path}")
    for cleared in run_guard.clear_dead_runs(instance):
        echo(cleared.line())
    signum = interrupts.received()  # one whose exception was lost while loading
    if signum is not None:
        raise interrupts.Interrupted(signum, "no run was started")
    execution = _Execution(project, defs, instance, echo, device, full, workers)
    success, settled = True, ""
    try:
        with (interrupts.on_hard_stop(execution.settle),
              run_guard.sleeping_slot_waits(echo)):
            for batch in planned:
                if not execution.run(batch):
                    success = False
                    break
    except interrupts.Interrupted as stop:  # a signal outside Dagster's own handling
        interrupts.taken()
        signum = stop.signum
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):  # one Dagster let out
        signum = interrupts.received() or signal.SIGINT
    finally:
        with interrupts.deferred():
            settled = execution.settle()
    signum = signum or interrupts.received()  # or one Dagster caught inside the run
    if signum is not None:
        raise interrupts.Interrupted(signum, settled)
    last = execution.backfill_ids[-1] if planned and len(planned[-1].keys) > 1 else (
        execution.run_ids[-1] if execution.run_ids else "")
    return Outcome(success=success, run_id=last, summary=_summary(instance, execution.run_ids),
                   error=None if success else _failure(instance, execution.run_ids),
                   run_ids=execution.run_ids, backfill_ids=execution.backfill_ids)
