"""Running the asset graph from the CLI on the local Dagster instance, with compact
progress lines instead of Dagster's debug log, and a summary of what was made."""

from __future__ import annotations

import logging
import os
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError

from jammi import keys
from jammi.errors import JammiError
from jammi.spec.project import Project
from jammi_assets import interrupts, run_guard

SUMMARY_KEYS = ("outcome", "added", "changed", "deleted", "unchanged", "rows_encoded", "version",
                "rows_quarantined", "rows_skipped", "rows_truncated", "rows_per_second", "table_name",
                "vectors", "build_seconds")


@dataclass
class Outcome:
    success: bool
    run_id: str
    summary: list[dict] = field(default_factory=list)
    error: str | None = None


QUIET_INSTANCE = "# written by jammi: a local instance with default storage\ntelemetry:\n  enabled: false\n"


def use_local_instance(project: Project) -> dg.DagsterInstance:
    """$DAGSTER_HOME if set; else the project folder when it holds dagster.yaml; else a
    dagster_home folder inside the artifact directory. Runs show up in `dagster dev`. A home
    without dagster.yaml gets one that only turns telemetry off."""
    if not os.environ.get("DAGSTER_HOME"):
        home = project.root if (project.root / "dagster.yaml").exists() else (
            project.artifact_dir / "dagster_home")
        home.mkdir(parents=True, exist_ok=True)
        os.environ["DAGSTER_HOME"] = str(home)
    config = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    if not config.exists():  # else Dagster prints its telemetry banner on every run
        config.write_text(QUIET_INSTANCE, encoding="utf-8")
    os.chdir(os.environ["DAGSTER_HOME"])  # dagster.yaml's relative storage paths
    return dg.DagsterInstance.get()


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


def run_materialization(project: Project, select: list[str], device: str = "auto",
                        echo: Callable[[str], None] = print, full: bool = False) -> Outcome:
    """Materialize `select` (default: everything); `full` rebuilds embedding tables instead of
    refreshing them."""
    from jammi_assets.definitions import build_assets, build_resources

    assets = build_assets(project)
    selection = resolve_selection(project, select, assets) if select else None
    instance = use_local_instance(project)
    defs = dg.Definitions(assets=assets, resources=build_resources(project, device),
                          loggers={"jammi_progress": _progress_logger(echo)})
    job = defs.resolve_implicit_global_asset_job_def()
    count = len(selection) if selection else sum(len(a.keys) for a in assets)
    echo(f"materializing {count} asset(s) of {project.path}")
    chosen = {k.to_user_string() for k in selection} if selection else {
        k.to_user_string() for a in assets for k in a.keys}
    ops = {keys.embeddings(p): {"config": {"full": True}} for p in project.pipelines
           if keys.embeddings(p) in chosen} if full else {}
    for cleared in run_guard.clear_dead_runs(instance):
        echo(cleared.line())
    signum = interrupts.received()  # one whose exception was lost while loading
    if signum is not None:
        raise interrupts.Interrupted(signum, "no run was started")
    run_id = str(uuid.uuid4())
    try:
        with (interrupts.on_hard_stop(lambda: _settle(instance, run_id)),
              run_guard.sleeping_slot_waits(echo)):
            result = job.execute_in_process(
                run_config={"loggers": {"jammi_progress": {}}, **({"ops": ops} if ops else {})},
                instance=instance,
                asset_selection=selection,
                raise_on_error=False,
                run_id=run_id,
                tags={run_guard.PID_TAG: run_guard.process_tag()},
            )
    except interrupts.Interrupted as stop:  # a signal outside Dagster's own handling
        interrupts.taken()
        signum = stop.signum
    except (KeyboardInterrupt, DagsterExecutionInterruptedError):  # one Dagster let out
        signum = interrupts.received() or signal.SIGINT
    finally:
        with interrupts.deferred():
            settled = _settle(instance, run_id)
    signum = signum or interrupts.received()  # or one Dagster caught inside the run
    if signum is not None:
        raise interrupts.Interrupted(signum, settled)
    outcome = Outcome(success=result.success, run_id=result.run_id)
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        meta = {k: v.value for k, v in mat.metadata.items()}
        details = ", ".join(f"{k}={meta[k]}" for k in SUMMARY_KEYS if k in meta)
        rows = meta.get("dagster/row_count", meta.get("vectors", ""))
        outcome.summary.append({"asset": mat.asset_key.to_user_string(), "rows": rows,
                                "details": details, "metadata": meta})
    for event in result.all_events:
        if event.is_step_failure:
            outcome.error = f"{event.step_key}: {_root_cause(event.step_failure_data.error)}"
            break
    return outcome


