"""The production deployment for real (issue 10, item 7): deploy/production/dagster.yaml on a
fresh PostgreSQL database, the celery executor (JAMMI_EXECUTOR=celery) and two dagster-celery
workers on the local broker. A run of an unpartitioned source, and a 4-partition asset backfill
launched by the daemon (as the UI's "Launch backfill" does), each make the same embedding table
as a single-process run of the same rows: same keys, vectors within 1e-5.

Needs the `production` extra (dagster-postgres, dagster-celery), PostgreSQL on 127.0.0.1:5432 and
the broker ($JAMMI_CELERY_BROKER, default RabbitMQ on localhost:5672); skips, saying which,
when one is missing. Every run of this module gets its own database and Celery queue, so it can
share the servers with anything else; both are removed at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import numpy as np
import pytest

pytest.importorskip("dagster_postgres", reason="needs the production extra: pip install -e '.[production]'")
pytest.importorskip("dagster_celery", reason="needs the production extra: pip install -e '.[production]'")

from dagster._core.definitions.assets.graph.asset_graph import AssetGraph  # noqa: E402
from dagster._core.definitions.reconstruct import ReconstructableRepository  # noqa: E402
from dagster._core.execution.backfill import PartitionBackfill  # noqa: E402
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter  # noqa: E402
from dagster._core.storage.tags import BACKFILL_ID_TAG, PARTITION_NAME_TAG  # noqa: E402
from dagster._core.utils import make_new_backfill_id  # noqa: E402

from jammi import keys  # noqa: E402
from jammi.tables.catalog import Catalog  # noqa: E402
from jammi.tables.versions import read_current  # noqa: E402
from jammi_assets.definitions import build_assets  # noqa: E402
from jammi_assets.executors import BROKER_ENV, DEFAULT_BROKER, QUEUE_ENV  # noqa: E402
from tests.conftest import REPO, materialize, write_project  # noqa: E402

pytestmark = [pytest.mark.slow,
              # dagster-celery registers its task on every submit; Celery warns each time
              pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered")]

PG_ADMIN = os.environ.get("JAMMI_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
BROKER = os.environ.get(BROKER_ENV) or DEFAULT_BROKER
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
COLUMNS = {"id": "int", "title": "str", "body": "str", "created_at": "str"}
PARTITIONS = {"by": "created_at", "granularity": "day", "start": DAYS[0]}
THINGS = ["warm boots", "rain jacket", "two-person tent", "camping stove", "trail map"]
BIN = Path(sys.executable).parent
WORKERS = ("w1", "w2")


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname or "localhost", parsed.port or default_port),
                                 timeout=3).close()
        return True
    except OSError:
        return False


def where(url: str, default_port: int) -> str:
    """scheme://host:port of a URL, without its credentials."""
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.hostname or 'localhost'}:{parsed.port or default_port}"


def write_rows(path: Path) -> None:
    """40 rows, 10 a day over DAYS."""
    lines = ["id,title,body,created_at"]
    for d, day in enumerate(DAYS):
        for i in range(10):
            thing = THINGS[(d + i) % len(THINGS)]
            lines.append(f"{(d + 1) * 100 + i},{thing.title()} no. {i},A {thing} reviewed on day {d} "
                         f"by hiker {i},{day}T{8 + i:02d}:15:00")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def source(csv: Path, partitions: dict | None = None) -> dict:
    spec = {"kind": "csv", "path": str(csv), "key": "id", "columns": COLUMNS}
    return {**spec, "partitions": partitions} if partitions else spec


def pipeline(name: str) -> dict:
    return {"source": name, "text_columns": ["title", "body"]}


def table_vectors(project, pipe: str) -> dict[str, np.ndarray]:
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline=pipe)
    rows = read_current(rec.tables_dir, catalog.current_version(rec), ["_row_id", "vector"])
    ids = rows.column("_row_id").to_pylist()
    assert len(ids) == len(set(ids)), "a key is served twice"
    return dict(zip(ids, np.array(rows.column("vector").to_pylist(), dtype=np.float32), strict=True))


def assert_same_table(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want) and len(got) == 40
    np.testing.assert_allclose(np.stack([got[k] for k in sorted(got)]),
                               np.stack([want[k] for k in sorted(want)]), atol=1e-5)


def celery_workers_of(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> the Celery worker (hostname) that executed it, from the run's engine events."""
    workers = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.event_type_value != "ENGINE_EVENT":
            continue
        meta = event.engine_event_data.metadata or {}
        if "Celery worker" in meta:
            workers[event.step_key] = meta["Celery worker"].value
    return workers


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group this test started (dagster-celery runs celery as a child; the
    daemon runs a code server and run workers), SIGKILL after 30 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def log_tails(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted(folder.glob("*.log")))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """A fresh database, an instance folder holding deploy/production/dagster.yaml, one project
    (an unpartitioned source and a day-partitioned one over the same CSV) and two Celery
    workers, concurrency 1 each, on a queue of their own."""
    if not reachable(PG_ADMIN, 5432):
        pytest.skip(f"PostgreSQL is not reachable at {where(PG_ADMIN, 5432)} (set $JAMMI_TEST_PG_ADMIN)")
    broker_port = 6379 if BROKER.startswith("redis") else 5672
    if not reachable(BROKER, broker_port):
        pytest.skip(f"the Celery broker is not reachable at {where(BROKER, broker_port)} (set ${BROKER_ENV})")
    import psycopg

    root = tmp_path_factory.mktemp("production")
    csv = root / "data" / "reviews.csv"
    write_rows(csv)
    project = write_project(root / "project",
                            sources={"flat": source(csv), "reviews": source(csv, PARTITIONS)},
                            pipelines={"flat_pipe": pipeline("flat"), "reviews_pipe": pipeline("reviews")})
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "production" / "dagster.yaml", home / "dagster.yaml")
    logs = root / "logs"
    logs.mkdir()

    db = f"jammi_dagster_{uuid.uuid4().hex[:10]}"
    pg = urlparse(PG_ADMIN)
    queue = f"jammi_test_{uuid.uuid4().hex[:10]}"
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": pg.hostname or "127.0.0.1", "DAGSTER_PG_PORT": str(pg.port or 5432),
        "DAGSTER_PG_USER": pg.username or "postgres", "DAGSTER_PG_PASSWORD": pg.password or "",
        "DAGSTER_PG_DB": db,
        "JAMMI_PROJECT": str(project.path), "JAMMI_EXECUTOR": "celery",
        BROKER_ENV: BROKER, QUEUE_ENV: queue,
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    with psycopg.connect(PG_ADMIN, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{db}"')
    procs: list[subprocess.Popen] = []
    instance = None
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        try:
            # the schema first: workers starting together would each try to create it
            instance = dg.DagsterInstance.from_config(str(home))
            for name in WORKERS:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "jammi_assets.executors", "celery-worker",
                     "--name", f"{name}-{queue}", "--concurrency", "1"],
                    cwd=REPO, env={**os.environ}, start_new_session=True,
                    stdout=(logs / f"{name}.log").open("w"), stderr=subprocess.STDOUT))
            wait_for_workers(queue, logs)
            yield {"project": project, "csv": csv, "root": root, "home": home, "instance": instance,
                   "queue": queue, "db": db, "env": env, "logs": logs}
        finally:
            for proc in procs:
                stop(proc)
            if instance is not None:
                instance.dispose()
            with psycopg.connect(PG_ADMIN, autocommit=True) as con:
                con.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def wait_for_workers(queue: str, logs: Path, timeout: float = 90) -> None:
    from dagster_celery.make_app import make_app

    app = make_app({"broker": BROKER, "backend": "rpc://" if BROKER.startswith("pyamqp") else BROKER})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if sum(1 for reply in replies for name in reply if queue in name) == len(WORKERS):
            return
    raise AssertionError(f"the Celery workers did not answer within {timeout:.0f} s\n{log_tails(logs)}")


@pytest.fixture(scope="module")
def single_process(deployment, tmp_path_factory):
    """The same rows, unpartitioned, materialized in one process on an ephemeral instance."""
    root = tmp_path_factory.mktemp("single_process")
    project = write_project(root, sources={"flat": source(deployment["csv"])},
                            pipelines={"flat_pipe": pipeline("flat")})
    result = materialize(project)
    assert result.success
    return table_vectors(project, "flat_pipe")


def test_celery_run_on_postgres_equals_single_process(deployment, single_process):
    instance, project = deployment["instance"], deployment["project"]
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2

    repo = ReconstructableRepository.for_module("jammi_assets.definitions", "defs",
                                                working_directory=str(REPO))
    flat = [dg.AssetKey(name) for name in keys.assets_of(project, "flat")]
    with dg.execute_job(repo.get_reconstructable_job("__ASSET_JOB"), instance=instance,
                        asset_selection=flat) as result:
        assert result.success, log_tails(deployment["logs"])
        run_id = result.run_id
    # every step ran as a task in one of the two workers, not in this process
    workers = celery_workers_of(instance, run_id)
    assert set(workers) == {"raw_flat", "validate_flat", "flat_pipe_embeddings", "flat_pipe_ann_index"}
    assert {w.split("@")[0] for w in workers.values()} <= {f"{n}-{deployment['queue']}" for n in WORKERS}
    assert_same_table(table_vectors(project, "flat_pipe"), single_process)


def add_reviews_backfill(instance, project, days: list[str], title: str) -> PartitionBackfill:
    """An asset backfill of the `reviews` source's assets over `days`, as the UI launches it (the
    daemon queues one run per partition)."""
    selection = [dg.AssetKey(name) for name in keys.assets_of(project, "reviews")]
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(), asset_graph=AssetGraph.from_assets(build_assets(project)),
        partition_names=days, asset_selection=selection, backfill_timestamp=time.time(), tags={},
        dynamic_partitions_store=instance, all_partitions=False, title=title, description=None,
        run_config=None)
    instance.add_backfill(backfill)
    return backfill


def write_workspace(home: Path) -> Path:
    """The daemon's workspace.yaml in `home`: this repository's code location."""
    workspace = home / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: jammi_assets.definitions\n"
        f"      working_directory: {REPO}\n      location_name: jammi\n", encoding="utf-8")
    return workspace


def test_four_partition_backfill_on_celery_equals_unpartitioned(deployment, single_process):
    """An asset backfill of four days, as the UI launches it: the daemon queues one run per
    partition, launches them (QueuedRunCoordinator), each run's steps go to the two workers."""
    instance, project, home = deployment["instance"], deployment["project"], deployment["home"]
    backfill = add_reviews_backfill(instance, project, DAYS, "4 days on celery")
    workspace = write_workspace(home)
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
                              cwd=home, env={**os.environ}, start_new_session=True,
                              stdout=(deployment["logs"] / "daemon.log").open("w"),
                              stderr=subprocess.STDOUT)
    try:
        runs = wait_for_runs(instance, backfill.backfill_id, len(DAYS), deployment["logs"])
    finally:
        stop(daemon)
    assert sorted(r.tags[PARTITION_NAME_TAG] for r in runs) == DAYS
    assert all(r.status == DagsterRunStatus.SUCCESS for r in runs), log_tails(deployment["logs"])
    used = set()
    for run in runs:
        workers = celery_workers_of(instance, run.run_id)
        assert {"raw_reviews", "validate_reviews", "reviews_pipe_embeddings"} <= set(workers)
        used |= {w.split("@")[0] for w in workers.values()}
    assert used == {f"{n}-{deployment['queue']}" for n in WORKERS}  # both workers took steps

    assert len(Catalog(project.artifact_dir).tables(pipeline="reviews_pipe")) == 1
    assert_same_table(table_vectors(project, "reviews_pipe"), single_process)


def wait_for_runs(instance: dg.DagsterInstance, backfill_id: str, count: int, logs: Path,
                  timeout: float = 240) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = instance.get_runs(RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
        if len(runs) == count and all(r.is_finished for r in runs):
            return runs
        time.sleep(2)
    statuses = {r.tags.get(PARTITION_NAME_TAG): r.status.value
                for r in instance.get_runs(RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))}
    raise AssertionError(f"backfill {backfill_id}: runs {statuses} after {timeout:.0f} s\n{log_tails(logs)}")
