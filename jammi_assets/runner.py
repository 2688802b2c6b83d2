"""Running the asset graph from the CLI on the local Dagster instance, with compact
progress lines instead of Dagster's debug log, and a summary of what was made."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from jammi_assets.config import Project
from jammi_assets.errors import JammiError

SUMMARY_KEYS = ("rows_quarantined", "rows_skipped", "rows_truncated", "rows_per_second",
                "table_name", "vectors", "build_seconds")


@dataclass
class Outcome:
    success: bool
    run_id: str
    summary: list[dict] = field(default_factory=list)
    error: str | None = None


def use_local_instance(project: Project) -> dg.DagsterInstance:
    """$DAGSTER_HOME if set; else the project folder when it holds dagster.yaml; else a
    dagster_home folder inside the artifact directory. Runs show up in `dagster dev`."""
    if not os.environ.get("DAGSTER_HOME"):
        home = project.root if (project.root / "dagster.yaml").exists() else (
            project.artifact_dir / "dagster_home")
        home.mkdir(parents=True, exist_ok=True)
        os.environ["DAGSTER_HOME"] = str(home)
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


def _frame_assets(project: Project, name: str) -> list[str]:
    """The assets that produce the rows of a source or of a fused entity."""
    entity = project.entity_of(name)
    if entity is None:
        return [f"raw_{name}", f"validated_{name}", f"quarantine_{name}"]
    out = [a for s in project.entities[entity].sources for a in _frame_assets(project, s)]
    return out + [f"fused_{entity}", f"fused_{entity}_provenance", f"fused_{entity}_links"]


def resolve_selection(project: Project, names: list[str], all_keys: set[str]) -> list[dg.AssetKey]:
    """Asset names as-is; a source or entity name means its assets and every pipeline over it;
    a pipeline name means its source's assets and the pipeline's table and index."""
    chosen: list[str] = []
    for name in names:
        known = name in project.sources or name in project.entities
        if known:
            chosen += _frame_assets(project, name)
            for p in project.pipelines_of(name):
                chosen += [f"{p}_embeddings", f"{p}_ann_index"]
        if name in project.pipelines:
            chosen += _frame_assets(project, project.pipelines[name].source)
            chosen += [f"{name}_embeddings", f"{name}_ann_index"]
        if name in all_keys:
            chosen.append(name)
        if not known and name not in project.pipelines and name not in all_keys:
            raise JammiError(f"--select {name!r}: not an asset, source, entity or pipeline "
                             f"(assets: {', '.join(sorted(all_keys))})")
    return [dg.AssetKey(k) for k in dict.fromkeys(chosen)]


def _root_cause(error) -> str:
    while getattr(error, "cause", None) is not None:
        error = error.cause
    msg = (error.message or "").strip()
    return msg.split(": ", 1)[1] if msg.startswith(("jammi_assets.", "dagster.")) and ": " in msg else msg


def run_materialization(project: Project, select: list[str], device: str = "auto",
                        echo: Callable[[str], None] = print) -> Outcome:
    from jammi_assets.definitions import build_assets, build_resources

    assets = build_assets(project)
    keys = {k.to_user_string() for a in assets for k in a.keys}
    selection = resolve_selection(project, select, keys) if select else None
    instance = use_local_instance(project)
    defs = dg.Definitions(assets=assets, resources=build_resources(project, device),
                          loggers={"jammi_progress": _progress_logger(echo)})
    job = defs.resolve_implicit_global_asset_job_def()
    echo(f"materializing {len(selection) if selection else len(keys)} asset(s) of {project.path}")
    result = job.execute_in_process(
        run_config={"loggers": {"jammi_progress": {}}},
        instance=instance,
        asset_selection=selection,
        raise_on_error=False,
    )
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


