"""Runs of the code location's jobs made by `jammi materialize`, as the UI would make them.

Each run is created from the named job (`<source>_job`, `jammi_all`) with the origin of the
code location that workspace.yaml declares (`jammi`, module jammi_assets.definitions), so the
UI lists it under that job and offers "Re-execute"; it carries `jammi/source` and
`jammi/partition`. A run is executed here, in this process (one model load, no process per
step), or, for the keys of a backfill, by Dagster's own run worker (`dagster api execute_run`,
what the default run launcher starts; jammi_assets.run_worker), a few at a time."""

from __future__ import annotations

import os
import secrets
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psutil

from jammi_assets import run_guard
from jammi_assets.dagster_private import (
    BACKFILL_ID_TAG,
    BulkActionStatus,
    CodePointer,
    ExecuteRunArgs,
    InMemoryJob,
    LoadableTargetOrigin,
    ManagedGrpcPythonEnvCodeLocationOrigin,
    PartitionBackfill,
    RemoteJobOrigin,
    RemotePartitionSetOrigin,
    RemoteRepositoryOrigin,
    RepositoryPythonOrigin,
    execute_run_iterator,
    merge_run_tags,
)

LOCATION_NAME = "jammi"  # workspace.yaml's location_name
MODULE = "jammi_assets.definitions"
ATTRIBUTE = "defs"
REPOSITORY = "__repository__"  # Dagster's name for the repository of a Definitions
CODE_ROOT = str(Path(__file__).resolve().parents[1])
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
POLL_SECONDS = 1.0


def repository_origin() -> RemoteRepositoryOrigin:
    """The repository as `dagster dev -w workspace.yaml` loads it."""
    target = LoadableTargetOrigin(executable_path=sys.executable, module_name=MODULE,
                                  working_directory=CODE_ROOT)
    return RemoteRepositoryOrigin(ManagedGrpcPythonEnvCodeLocationOrigin(target, LOCATION_NAME),
                                  REPOSITORY)


def python_origin() -> RepositoryPythonOrigin:
    """How a run worker process loads the repository."""
    return RepositoryPythonOrigin(
        executable_path=sys.executable,
        code_pointer=CodePointer.from_module(MODULE, ATTRIBUTE, CODE_ROOT),
        entry_point=[sys.executable, "-m", "dagster"])


def run_config_for(job: dg.JobDefinition, config: dict) -> dict:
    """`config`, plus the in-process executor under Dagster's default executor (so the run
    and its re-executions load the model once)."""
    if job.executor_def.name == dg.multi_or_in_process_executor.name:
        return {**config, **IN_PROCESS}
    return config


def create_run(instance: dg.DagsterInstance, job: dg.JobDefinition, selection: list[dg.AssetKey],
               run_config: dict, tags: dict[str, str], partition: str | None = None) -> dg.DagsterRun:
    """A NOT_STARTED run of `job` (its `selection`) with the code location's origins."""
    tags = dict(merge_run_tags(job_def=job, partition_key=partition, tags=tags,
                               asset_selection=selection, instance=instance, run_config=run_config))
    return instance.create_run_for_job(
        job_def=job, run_config=run_config, tags=tags, asset_selection=set(selection),
        remote_job_origin=RemoteJobOrigin(repository_origin(), job.name),
        job_code_origin=python_origin().get_job_origin(job.name))


def execute_here(instance: dg.DagsterInstance, job: dg.JobDefinition, run: dg.DagsterRun,
                 loggers: dict[str, dg.LoggerDefinition]) -> None:
    """Execute `run` in this process with the in-process executor and the given loggers (the
    run's record keeps its own config: the loggers are this process's business)."""
    local = job.with_logger_defs({**job.loggers, **loggers}).with_executor_def(dg.in_process_executor)
    config = {k: v for k, v in run.run_config.items() if k != "execution"}
    config["loggers"] = {name: {} for name in loggers}
    for _event in execute_run_iterator(InMemoryJob(local), run._replace(run_config=config), instance):
        pass


@dataclass
class Worker:
    run: dg.DagsterRun
    process: subprocess.Popen
    log: Path


def worker_command(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """Dagster's run worker for `run`, with jammi's sleeping pool-slot waits (run_worker.py)."""
    args = ExecuteRunArgs(job_origin=run.job_code_origin, run_id=run.run_id,
                          instance_ref=instance.get_ref(), set_exit_code_on_failure=True)
    return [sys.executable, "-m", "jammi_assets.run_worker", dg.serialize_value(args)]


def worker_env(workers: int) -> dict[str, str]:
    """The environment of a backfill worker: the CPUs shared among the workers running at once
    (each torch process otherwise takes every core, and `workers` of them thrash), unless the
    user set the thread count."""
    env = os.environ.copy()
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, workers))))
    return env


def execute_in_workers(instance: dg.DagsterInstance, runs: list[dg.DagsterRun], workers: int,
                       log_dir: Path, on_change: Callable[[dg.DagsterRun], None],
                       started: list[Worker]) -> None:
    """Execute `runs` by `dagster api execute_run` processes, `workers` at a time; `on_change`
    hears each run's status changes. `started` lists the workers (for whoever must stop them).
    Each run's `jammi/pid` becomes its worker's, so a later `jammi materialize` clears it only
    when that worker is gone."""
    log_dir.mkdir(parents=True, exist_ok=True)
    pending = list(runs)
    active: list[Worker] = []
    last: dict[str, dg.DagsterRunStatus] = {}
    while pending or active:
        while pending and len(active) < workers:
            run = pending.pop(0)
            log = log_dir / f"{run.run_id}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(worker_command(instance, run), stdout=subprocess.DEVNULL,
                                           stderr=out, env=worker_env(workers))
            try:
                instance.add_run_tags(run.run_id, {run_guard.PID_TAG: run_guard.process_tag(process.pid)})
            except psutil.NoSuchProcess:
                pass  # over already
            worker = Worker(run, process, log)
            active.append(worker)
            started.append(worker)
        time.sleep(POLL_SECONDS)
        for worker in list(active):
            for current in _status_changes(instance, worker.run.run_id, last):
                on_change(current)
            if worker.process.poll() is not None:
                active.remove(worker)
                if worker.process.returncode == 0:
                    worker.log.unlink(missing_ok=True)  # kept only for a run that failed
                for current in _status_changes(instance, worker.run.run_id, last):
                    on_change(current)


def _status_changes(instance: dg.DagsterInstance, run_id: str,
                    last: dict[str, dg.DagsterRunStatus]) -> Iterator[dg.DagsterRun]:
    run = instance.get_run_by_id(run_id)
    if run is not None and last.get(run_id) != run.status:
        last[run_id] = run.status
        yield run


def stop_workers(workers: list[Worker], grace: float = 5.0) -> None:
    """SIGTERM every live worker (Dagster's run worker then stops its run), SIGKILL after `grace`."""
    live = [w for w in workers if w.process.poll() is None]
    for w in live:
        w.process.terminate()
    deadline = time.monotonic() + grace
    for w in live:
        try:
            w.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.process.kill()


def new_backfill_id() -> str:
    """An id like the UI's: eight lowercase letters."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))


def add_backfill(instance: dg.DagsterInstance, backfill_id: str, job: dg.JobDefinition,
                 keys: list[str], selection: list[dg.AssetKey], tags: dict[str, str],
                 title: str) -> None:
    """The record of a backfill whose runs (tagged with its id) this process has created: every
    partition counts as submitted, so the backfill daemon, if one runs, only waits for the runs
    and settles the status; `finish_backfill` settles it otherwise. Add it after the runs, so
    that daemon never sees it without runs."""
    instance.add_backfill(PartitionBackfill(
        backfill_id=backfill_id, status=BulkActionStatus.REQUESTED, from_failure=False,
        tags=tags, backfill_timestamp=time.time(), asset_selection=selection,
        title=title, partition_set_origin=RemotePartitionSetOrigin(
            repository_origin=repository_origin(), partition_set_name=f"{job.name}_partition_set"),
        partition_names=keys, last_submitted_partition_name=keys[-1], reexecution_steps=None))


def backfill_tags(backfill_id: str) -> dict[str, str]:
    return {BACKFILL_ID_TAG: backfill_id}


def finish_backfill(instance: dg.DagsterInstance, backfill_id: str, success: bool) -> None:
    backfill = instance.get_backfill(backfill_id)
    if backfill is None or backfill.status != BulkActionStatus.REQUESTED:
        return  # the daemon settled it already
    status = BulkActionStatus.COMPLETED_SUCCESS if success else BulkActionStatus.COMPLETED_FAILED
    instance.update_backfill(backfill.with_status(status).with_end_timestamp(time.time()))
