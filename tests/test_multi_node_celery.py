"""Nodes that share no disk, for real (issue 23, item 7): two Celery workers and the Dagster
daemon, each in its own empty working directory with its own Dagster home (a copy of
deploy/production/dagster.yaml) and its own node cache (JAMMI_CACHE_DIR), share only the
SeaweedFS S3 server (`artifact_dir: s3://...`, the source file there too), PostgreSQL (Jammi's
catalog and Dagster's instance storage) and RabbitMQ. The daemon launches a 12-partition
backfill whose steps run in the two workers, while a fourth process, in a directory of its
own, runs `jammi sql` and `jammi search` in a loop: it never errors once the table exists and
never sees a half-committed version (every count a whole number of partitions, no key twice).
Afterwards the table equals a single-node local build of the same rows (keys; vectors within
1e-5) and `jammi verify` is clean from each node.

Needs what tests/test_production_celery.py needs (the production extra, PostgreSQL, the broker)
and the S3 server; skips, saying which, when one is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import numpy as np
import pytest
import yaml

pytest.importorskip("dagster_postgres", reason="needs the production extra: pip install -e '.[production]'")
pytest.importorskip("dagster_celery", reason="needs the production extra: pip install -e '.[production]'")

from dagster._core.storage.dagster_run import DagsterRunStatus  # noqa: E402
from dagster._core.storage.tags import PARTITION_NAME_TAG  # noqa: E402

from jammi import store  # noqa: E402
from jammi.spec.project import load_project  # noqa: E402
from jammi_assets.executors import BROKER_ENV, QUEUE_ENV  # noqa: E402
from tests.conftest import PG_DSN, REPO, materialize, new_bucket, write_project  # noqa: E402
from tests.test_production_celery import (  # noqa: E402
    BIN,
    BROKER,
    PG_ADMIN,
    add_reviews_backfill,
    celery_workers_of,
    log_tails,
    reachable,
    stop,
    wait_for_runs,
    wait_for_workers,
    where,
    write_workspace,
)

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered")]

DAYS = [f"2026-11-{d:02d}" for d in range(1, 13)]
PER_DAY = 5
THINGS = ["warm boots", "rain jacket", "two-person tent", "camping stove", "trail map", "water filter"]
COLUMNS = {"id": "int", "title": "str", "body": "str", "created_at": "str"}
WORKERS = ("w1", "w2")

# the fourth node: `jammi sql` and `jammi search` through the command line's own code, in a loop,
# until the stop file appears; what it saw goes to the JSON file
READER = r'''
import json, os, sys, time
from click.testing import CliRunner
from jammi.cli import cli
stop, out = sys.argv[1], sys.argv[2]
seen = {"sql": 0, "search": 0, "counts": [], "errors": [], "before_table": 0}
table = False
runner = CliRunner()
while not os.path.exists(stop):
    for args in (["sql", "SELECT count(*) AS n, count(DISTINCT _row_id) AS d FROM "
                  "jammi.reviews_pipe_embeddings", "--format", "json"],
                 ["search", "reviews_pipe", "a warm tent for the trail", "-k", "3", "--select", "title",
                  "--format", "json"]):
        res = runner.invoke(cli, args)
        if res.exit_code != 0:
            if not table:  # before the first commit there is nothing to read: not a failure
                seen["before_table"] += 1
                time.sleep(0.2)  # leave the CPUs to the workers meanwhile
                continue
            seen["errors"].append(f"{args[0]}: {res.output.strip()[-500:]}")
            continue
        table = True
        try:
            rows = json.loads(res.stdout)
        except ValueError:
            seen["errors"].append(f"{args[0]}: not JSON: {res.stdout[-300:]}")
            continue
        if args[0] == "sql":
            seen["sql"] += 1
            n, d = rows[0]["n"], rows[0]["d"]
            seen["counts"].append(n)
            if n != d or n % PER_DAY:
                seen["errors"].append(f"half-committed: {n} rows, {d} keys")
        else:
            seen["search"] += 1
            if len(rows) != min(3, seen["counts"][-1] if seen["counts"] else 3) or any(
                    not r["title"] for r in rows):
                seen["errors"].append(f"search returned {rows}")
with open(out, "w") as f:
    json.dump(seen, f)
'''.replace("PER_DAY", str(PER_DAY))


def rows_csv() -> str:
    lines = ["id,title,body,created_at"]
    for d, day in enumerate(DAYS):
        for i in range(PER_DAY):
            thing = THINGS[(d + i) % len(THINGS)]
            lines.append(f"{(d + 1) * 100 + i},{thing.title()} no. {i},A {thing} reviewed on day {d} by "
                         f"hiker {i},{day}T{8 + i:02d}:15:00")
    return "\n".join(lines) + "\n"


class Node:
    """One machine: an empty working directory, its own Dagster home and node cache, and its copy
    of the project file."""

    def __init__(self, root: Path, doc: dict, env: dict[str, str]):
        self.root = root
        self.work, self.home, self.cache = root / "work", root / "dagster_home", root / "cache"
        for folder in (self.work, self.home):
            folder.mkdir(parents=True)
        shutil.copy(REPO / "deploy" / "production" / "dagster.yaml", self.home / "dagster.yaml")
        (self.work / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        self.env = {**env, "DAGSTER_HOME": str(self.home), "JAMMI_CACHE_DIR": str(self.cache),
                    "JAMMI_PROJECT": str(self.work / "jammi.yaml")}

    def start(self, args: list[str], log: Path) -> subprocess.Popen:
        return subprocess.Popen(args, cwd=self.work, env=self.env, start_new_session=True,
                                stdout=log.open("w"), stderr=subprocess.STDOUT)

    def jammi(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "from jammi_assets.cli import main; main()", *args],
                              cwd=self.work, env=self.env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def services(s3_env):
    if not reachable(PG_ADMIN, 5432):
        pytest.skip(f"PostgreSQL is not reachable at {where(PG_ADMIN, 5432)} (set $JAMMI_TEST_PG_ADMIN)")
    broker_port = 6379 if BROKER.startswith("redis") else 5672
    if not reachable(BROKER, broker_port):
        pytest.skip(f"the Celery broker is not reachable at {where(BROKER, broker_port)} (set ${BROKER_ENV})")
    import psycopg

    db, schema = f"jammi_dagster_{uuid.uuid4().hex[:10]}", f"jammi_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{db}"')
    try:
        yield {"s3": s3_env, "db": db, "schema": schema}
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        with psycopg.connect(PG_DSN, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_12_partition_backfill_on_nodes_that_share_no_disk(services, tmp_path, monkeypatch):
    bucket = new_bucket(services["s3"])
    services["s3"].put(f"s3://{bucket}/landing/reviews.csv", rows_csv().encode())
    url = f"s3://{bucket}/jammi/reviews"
    doc = {"artifact_dir": url,
           "catalog": {"postgres": "${JAMMI_CATALOG_DSN}", "schema": services["schema"]},
           "sources": {"reviews": {"kind": "csv", "path": f"s3://{bucket}/landing/reviews.csv", "key": "id",
                                   "columns": COLUMNS,
                                   "partitions": {"by": "created_at", "granularity": "day",
                                                  "start": DAYS[0]}}},
           "pipelines": {"reviews_pipe": {"source": "reviews", "text_columns": ["title", "body"]}}}
    pg = urlparse(PG_ADMIN)
    queue = f"jammi_test_{uuid.uuid4().hex[:10]}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DAGSTER_", "JAMMI_"))}
    base.update(services["s3"].env(), JAMMI_CATALOG_DSN=PG_DSN, JAMMI_EXECUTOR="celery",
                DAGSTER_PG_HOST=pg.hostname or "127.0.0.1", DAGSTER_PG_PORT=str(pg.port or 5432),
                DAGSTER_PG_USER=pg.username or "postgres", DAGSTER_PG_PASSWORD=pg.password or "",
                DAGSTER_PG_DB=services["db"], PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1",
                TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                **{BROKER_ENV: BROKER, QUEUE_ENV: queue})
    nodes = {name: Node(tmp_path / name, doc, base) for name in (*WORKERS, "daemon", "reader")}
    logs = tmp_path / "logs"
    logs.mkdir()

    # the instance's schema first (workers starting together would each try to create it), from
    # the daemon's node, and the backfill as the UI's "Launch backfill" adds it
    for name, value in nodes["daemon"].env.items():
        monkeypatch.setenv(name, value)
    project = load_project(nodes["daemon"].work / "jammi.yaml")
    instance = dg.DagsterInstance.from_config(str(nodes["daemon"].home))
    procs: list[subprocess.Popen] = []
    stop_file, seen_file = nodes["reader"].root / "stop", nodes["reader"].root / "seen.json"
    try:
        for name in WORKERS:
            procs.append(nodes[name].start([sys.executable, "-m", "jammi_assets.executors", "celery-worker",
                                            "--name", f"{name}-{queue}", "--concurrency", "1"],
                                           logs / f"{name}.log"))
        wait_for_workers(queue, logs)
        reader = nodes["reader"].start([sys.executable, "-c", READER, str(stop_file), str(seen_file)],
                                       logs / "reader.log")
        procs.append(reader)
        backfill = add_reviews_backfill(instance, project, DAYS, "12 days, no shared disk")
        workspace = write_workspace(nodes["daemon"].home)
        procs.append(nodes["daemon"].start([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
                                           logs / "daemon.log"))
        runs = wait_for_runs(instance, backfill.backfill_id, len(DAYS), logs, timeout=1500)
        time.sleep(5)  # the reader sees the last version a few more times
        stop_file.touch()
        reader.wait(120)
    finally:
        stop_file.touch()
        for proc in procs:
            stop(proc)
        instance.dispose()

    assert sorted(r.tags[PARTITION_NAME_TAG] for r in runs) == DAYS
    assert all(r.status == DagsterRunStatus.SUCCESS for r in runs), log_tails(logs)
    used = set()
    for run in runs:
        used |= {w.split("@")[0] for w in celery_workers_of(instance, run.run_id).values()}
    assert used == {f"{n}-{queue}" for n in WORKERS}, used  # both workers took steps

    seen = json.loads(seen_file.read_text(encoding="utf-8"))
    print(f"reader: {seen['sql']} sql and {seen['search']} searches over the backfill, "
          f"{seen['before_table']} before the first commit; counts seen {sorted(set(seen['counts']))}")
    assert seen["errors"] == [], seen["errors"][:5]
    assert seen["sql"] >= 3 and seen["search"] >= 3 and seen["counts"][-1] == len(DAYS) * PER_DAY, seen

    # no node kept a shared file to itself, and each one verifies the table
    for node in nodes.values():
        assert not list(node.cache.glob("nodes/*/frames")) and not list(node.cache.glob("nodes/*/jammi_db"))
        done = node.jammi("verify")
        assert done.returncode == 0, f"{node.root.name}: {done.stdout}\n{done.stderr}"

    # the table equals a single-node local build of the same rows
    from tests.test_production_celery import table_vectors

    got = table_vectors(project, "reviews_pipe")
    csv = tmp_path / "local" / "reviews.csv"
    csv.parent.mkdir()
    csv.write_text(rows_csv(), encoding="utf-8")
    for name in list(os.environ):
        if name.startswith(("AWS_", "JAMMI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "local-cache"))
    local = write_project(tmp_path / "local", sources={"flat": {"kind": "csv", "path": str(csv), "key": "id",
                                                                "columns": COLUMNS}},
                          pipelines={"flat_pipe": {"source": "flat", "text_columns": ["title", "body"]}})
    assert materialize(local).success
    want = table_vectors(local, "flat_pipe")
    assert sorted(got) == sorted(want) and len(got) == len(DAYS) * PER_DAY
    np.testing.assert_allclose(np.stack([got[k] for k in sorted(got)]),
                               np.stack([want[k] for k in sorted(want)]), atol=1e-5)
