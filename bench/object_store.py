"""Tables on object storage against the same tables on local disk (issue 23, item 9).

One project is built twice from the same source file: once with `artifact_dir: artifacts` and
the local catalog, once with `artifact_dir: s3://BUCKET/objstore` on a SeaweedFS server this
script starts (`weed server -s3`, as the tests do: tests/s3_server.py) and `catalog: {postgres:
...}` in a fresh schema of the local PostgreSQL (`--dsn`, dropped afterwards). The source is a
CSV on local disk in both cases, `--rows` rows (default 100,000) drawn from bench/scale.py's pool
of `--pool` distinct product titles (default 50,000), one pipeline over [title, category, brand].

Measured, for each of the two:

- build: one `jammi materialize --full` process (wall seconds, peak RSS);
- refresh: after 1% of the rows were drawn again from the pool (bench/scale.py's change), one
  `jammi materialize` process;
- search: a fresh process with a fresh JAMMI_CACHE_DIR (nothing fetched, no published file)
  loads the model (not timed), then opens the project and searches one query vector: the cold
  search (project load, catalog read, the node's published jammi.duckdb, sidecars fetched and
  opened); then `--queries` more query vectors in the same process: the warm p50 and p99;
- `jammi sql "SELECT count(*) ..."` over the embedding table: one process's wall;
- catalog round trips (Catalog.round_trips: statements sent to PostgreSQL, opens of the catalog
  file locally) per Dagster step of each materialize process (counted at STEP_START and at
  STEP_SUCCESS/FAILURE), per cold search and per warm query.

Each `jammi` process is started under `/usr/bin/time -v` through a small runner that counts the
round trips. Prints a table and the targets, and writes bench/results/object_store.json.

    flock /tmp/jammi-bench.lock python bench/object_store.py            # about 25 min on 2 CPUs
    flock /tmp/jammi-bench.lock python bench/object_store.py --quick    # 5,000 rows: a smoke test
    python bench/object_store.py [--rows 100000] [--pool 50000] [--queries 300]
        [--dsn postgresql://127.0.0.1:5432/test] [--work-dir DIR] [--keep]
        [--results bench/results/object_store.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale import (  # noqa: E402
    PIPELINE,
    QUIET_INSTANCE,
    SEED,
    TEXT_COLUMNS,
    TIME,
    _commit,
    csv_source,
    draw_rows,
    encoded,
    machine,
    make_pool,
    parse_time_v,
    read_runs,
    redraw_rows,
    run_ids,
    save,
    software,
    write_csv,
)

RESULTS = ROOT / "bench" / "results" / "object_store.json"
DSN = "postgresql://127.0.0.1:5432/test"
BACKENDS = ("local", "s3")
TABLE_VIEW = f"jammi.{PIPELINE}_embeddings"
TARGETS = {  # name: (comparison, bound)
    "build_ratio": ("<=", 1.25),
    "refresh_1pct_ratio": ("<=", 1.5),
    "warm_search_p50_ratio": ("<=", 1.2),
    "cold_search_s3_s": ("<=", 2.0),
}
DEFINITIONS = {
    "wall_s": "wall seconds of the whole `jammi` process",
    "build_ratio": "wall of the `jammi materialize --full` build on S3 / on local disk",
    "refresh_1pct_ratio": "wall of the `jammi materialize` run after 1% of rows were drawn again from the "
                          "pool, on S3 / on local disk",
    "warm_search_p50_ratio": "p50 of Jammi.search with a query vector, many queries in one process, "
                             "S3 / local disk",
    "cold_search_s3_s": "seconds of the first search of a fresh process with a fresh JAMMI_CACHE_DIR "
                        "on S3: project load, catalog read, publish, sidecars fetched and opened, the "
                        "search (the model is loaded before the clock starts)",
    "cold_search_local_s": "the same on local disk: no target",
    "sql_count_ratio": "wall of the `jammi sql` count process, S3 / local disk: no target",
    "round_trips": "Catalog.round_trips: statements (or pipelined batches) sent to PostgreSQL on S3, "
                   "opens of the catalog file on local disk; per Dagster step, per cold search, "
                   "per warm query",
}

# Runs the `jammi` CLI (argv[2:]) in this process, counting catalog round trips per Dagster step
# (at each STEP_START and STEP_SUCCESS/FAILURE the instance handles) and in all; writes them as
# JSON to argv[1] when the process exits.
RUNNER = r"""
import atexit, json, sys
out, sys.argv = sys.argv[1], ["jammi", *sys.argv[2:]]
import dagster as dg
from jammi.tables import catalog, catalog_pg
def counted():
    return catalog_pg.round_trips.count + catalog.local_round_trips.count
steps, began = {}, {}
handle = dg.DagsterInstance.handle_new_event
def counting(self, event, *args, **kwargs):
    e = event.dagster_event
    if e is not None and e.step_key:
        if e.event_type_value == "STEP_START":
            began[e.step_key] = counted()
        elif e.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and e.step_key in began:
            steps[e.step_key] = steps.get(e.step_key, 0) + counted() - began.pop(e.step_key)
    return handle(self, event, *args, **kwargs)
dg.DagsterInstance.handle_new_event = counting
def dump():
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"steps": steps, "total": counted()}, fh)
atexit.register(dump)
from jammi_assets.cli import main
main()
"""

# A fresh process: loads the model (untimed), encodes the queries of argv[2] (a JSON list), then
# times opening the project argv[1] and its first search (cold), then one search per further
# query (warm); writes the times, the round trips and the first hits' keys as JSON to argv[3].
SEARCH_PROBE = r"""
import json, sys, time
project_path, queries_path, out = sys.argv[1:4]
from jammi.embedding.model import load_encoder
from jammi.spec.project import DEFAULT_MODEL, load_project
from jammi.tables import catalog, catalog_pg
def counted():
    return catalog_pg.round_trips.count + catalog.local_round_trips.count
texts = json.load(open(queries_path, encoding="utf-8"))
vectors = load_encoder(DEFAULT_MODEL, "cpu").encode(texts)
from jammi.app.facade import Jammi
trips0, t0 = counted(), time.perf_counter()
jammi = Jammi(load_project(project_path), recover_on_open=False)
first = jammi.search(PIPELINE, vector=vectors[0], k=10)
cold_s, cold_trips = time.perf_counter() - t0, counted() - trips0
warm, trips1 = [], counted()
for v in vectors[1:]:
    t = time.perf_counter()
    jammi.search(PIPELINE, vector=v, k=10)
    warm.append(time.perf_counter() - t)
json.dump({"cold_s": cold_s, "cold_round_trips": cold_trips, "warm_s": warm,
           "warm_round_trips": counted() - trips1, "first_hits": [str(k) for k in first["id"]]},
          open(out, "w", encoding="utf-8"))
""".replace("PIPELINE", repr(PIPELINE))


# ---------------------------------------------------------------- services


def start_s3(folder: Path):
    """SeaweedFS on free ports (tests/s3_server.py): the server, or exit saying why not."""
    import pytest

    from tests import s3_server

    try:
        return s3_server.start(folder)
    except pytest.skip.Exception as why:
        sys.exit(f"cannot run the S3 half: {why}")


def new_schema(dsn: str) -> str:
    import psycopg

    name = f"jammi_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(dsn, connect_timeout=5):
            pass
    except psycopg.Error as err:
        sys.exit(f"cannot reach PostgreSQL at {dsn}: {err} (--dsn names another server)")
    return name


def drop_schema(dsn: str, name: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# ---------------------------------------------------------------- projects and processes


def write_project(root: Path, csv: Path, artifact_dir: str, catalog: dict | None) -> Path:
    """The bench project (one csv source, one pipeline) with its own DAGSTER_HOME beside it."""
    doc: dict = {"artifact_dir": artifact_dir}
    if catalog is not None:
        doc["catalog"] = catalog
    doc |= {"sources": {"items": csv_source(str(csv))},
            "pipelines": {PIPELINE: {"source": "items", "text_columns": TEXT_COLUMNS}}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    home = root / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(QUIET_INSTANCE, encoding="utf-8")
    return root / "jammi.yaml"


def process_env(home: Path, cache: Path, extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_DEPLOYMENT", "JAMMI_PROJECT")}
    env.update(DAGSTER_HOME=str(home), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(ROOT), JAMMI_CACHE_DIR=str(cache), **extra)
    return env


def jammi(project: Path, args: list[str], logs: Path, name: str, cache: Path, extra: dict) -> dict:
    """One `jammi --project P ARGS` process through RUNNER under /usr/bin/time -v: wall, peak
    RSS, exit code, round trips (per step and in all), stdout, and the Dagster runs it made."""
    home = project.parent / "dagster_home"
    before = run_ids(home)
    logs.mkdir(parents=True, exist_ok=True)
    log, timing, trips = logs / f"{name}.log", logs / f"{name}.time", logs / f"{name}.trips.json"
    cmd = [TIME, "-v", "-o", str(timing), sys.executable, "-c", RUNNER, str(trips),
           "--project", str(project), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=project.parent, env=process_env(home, cache, extra),
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    found = {"name": name, "args": args, "exit_code": proc.returncode, "wall_s": round(wall, 2),
             **parse_time_v(timing.read_text(encoding="utf-8") if timing.exists() else ""), "log": str(log),
             "round_trips": json.loads(trips.read_text()) if trips.exists() else None}
    found["runs"] = read_runs(home, run_ids(home) - before)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-8:]
        found["error_tail"] = tail
        print(f"    ! {name} exited {proc.returncode}; log {log}:\n      " + "\n      ".join(tail))
    else:
        found["stdout_tail"] = proc.stdout.strip().splitlines()[-3:]
    total = (found["round_trips"] or {}).get("total")
    print(f"    {name:<22} exit {proc.returncode}  {wall:8.1f} s  {found['peak_rss_mb'] or 0:7.0f} MB  "
          f"rows_encoded {encoded(found) if found['runs'] else '-'}  round trips {total}", flush=True)
    return found


def search_probe(project: Path, queries: Path, logs: Path, name: str, cache: Path, extra: dict) -> dict:
    """SEARCH_PROBE in a fresh process with the fresh node cache `cache`."""
    out = logs / f"{name}.json"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", SEARCH_PROBE, str(project), str(queries), str(out)],
                          cwd=project.parent, env=process_env(project.parent / "dagster_home", cache, extra),
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (logs / f"{name}.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
        print(f"    ! {name} exited {proc.returncode}:\n      " + "\n      ".join(tail))
        return {"name": name, "exit_code": proc.returncode, "wall_s": round(wall, 2), "error_tail": tail}
    got = json.loads(out.read_text(encoding="utf-8"))
    warm = np.asarray(got["warm_s"]) * 1e3
    found = {"name": name, "exit_code": 0, "wall_s": round(wall, 2), "cold_s": round(got["cold_s"], 3),
             "cold_round_trips": got["cold_round_trips"], "warm_queries": len(warm),
             "warm_p50_ms": round(float(np.percentile(warm, 50)), 3),
             "warm_p99_ms": round(float(np.percentile(warm, 99)), 3),
             "warm_round_trips_per_query": round(got["warm_round_trips"] / max(1, len(warm)), 3),
             "first_hits": got["first_hits"]}
    print(f"    {name:<22} cold {found['cold_s']:.3f} s ({found['cold_round_trips']} round trips), warm p50 "
          f"{found['warm_p50_ms']:.3f} ms p99 {found['warm_p99_ms']:.3f} ms "
          f"({found['warm_round_trips_per_query']} round trips/query)", flush=True)
    return found


def rows_counted(proc: dict) -> int | None:
    """The count `jammi sql` printed (its last line's number)."""
    for line in reversed(proc.get("stdout_tail") or []):
        digits = line.strip().split()[-1:] if line.strip() else []
        if digits and digits[0].isdigit():
            return int(digits[0])
    return None


# ---------------------------------------------------------------- figures


def _ok(proc: dict | None) -> bool:
    return bool(proc) and proc["exit_code"] == 0


def _ratio(a, b) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def derive(runs: dict) -> dict:
    local, s3 = runs.get("local", {}), runs.get("s3", {})
    d: dict = dict.fromkeys(TARGETS)

    def both(step: str) -> bool:
        return _ok(local.get(step)) and _ok(s3.get(step))

    if both("build"):
        d["build_ratio"] = _ratio(s3["build"]["wall_s"], local["build"]["wall_s"])
    if both("refresh_1pct"):
        d["refresh_1pct_ratio"] = _ratio(s3["refresh_1pct"]["wall_s"], local["refresh_1pct"]["wall_s"])
    if both("search"):
        d["warm_search_p50_ratio"] = _ratio(s3["search"]["warm_p50_ms"], local["search"]["warm_p50_ms"])
        d["cold_search_local_s"] = local["search"]["cold_s"]
        d["same_first_hits"] = s3["search"]["first_hits"] == local["search"]["first_hits"]
    if _ok(s3.get("search")):
        d["cold_search_s3_s"] = s3["search"]["cold_s"]
    if both("sql_count"):
        d["sql_count_ratio"] = _ratio(s3["sql_count"]["wall_s"], local["sql_count"]["wall_s"])
    return d


def verdict(name: str, value) -> str:
    if value is None:
        return "n/a"
    op, bound = TARGETS[name]
    return "pass" if (value <= bound if op == "<=" else value == bound) else "FAIL"


def step_trips(proc: dict) -> str:
    steps = (proc.get("round_trips") or {}).get("steps") or {}
    return ", ".join(f"{k} {v}" for k, v in sorted(steps.items(), key=lambda kv: -kv[1])[:4])


def print_report(result: dict) -> None:
    runs = result["runs"]
    print(f"\n{'backend':<8}{'step':<14}{'exit':>5}{'wall s':>9}{'RSS MB':>8}{'trips':>7}  "
          "round trips per step")
    for backend in BACKENDS:
        for step in ("build", "refresh_1pct", "sql_count"):
            p = runs.get(backend, {}).get(step)
            if p:
                total = (p.get("round_trips") or {}).get("total")
                print(f"{backend:<8}{step:<14}{p['exit_code']:>5}{p['wall_s']:>9.1f}"
                      f"{p['peak_rss_mb'] or 0:>8.0f}{'' if total is None else total:>7}  {step_trips(p)}")
        s = runs.get(backend, {}).get("search")
        if _ok(s):
            print(f"{backend:<8}{'search':<14}{0:>5}  cold {s['cold_s']:.3f} s ({s['cold_round_trips']} "
                  f"trips); warm p50 {s['warm_p50_ms']:.3f} ms, p99 {s['warm_p99_ms']:.3f} ms over "
                  f"{s['warm_queries']} queries ({s['warm_round_trips_per_query']} trips/query)")
    derived = result["derived"]
    print(f"\n{'figure':<26}{'value':>10}  {'target':<10}result   ({result['settings']['rows']:,} rows"
          f"{', QUICK' if result['quick'] else ''})")
    for name, (op, bound) in TARGETS.items():
        value = derived.get(name)
        print(f"{name:<26}{'n/a' if value is None else str(value):>10}  {op + ' ' + str(bound):<10}"
              f"{verdict(name, value)}")
    for name in ("cold_search_local_s", "sql_count_ratio", "same_first_hits"):
        if derived.get(name) is not None:
            print(f"{'  (' + name + ')':<26}{derived[name]!s:>10}  no target")
    print(f"load average: start {result['load_average']['start']}, end {result['load_average']['end']}")


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000, help="rows of the source")
    ap.add_argument("--pool", type=int, default=50_000, help="distinct texts in the pool")
    ap.add_argument("--queries", type=int, default=300, help="warm searches per backend")
    ap.add_argument("--dsn", default=DSN, help="the PostgreSQL server of the S3 project's catalog")
    ap.add_argument("--quick", action="store_true", help="5,000 rows from a pool of 2,000, 100 queries")
    ap.add_argument("--work-dir", type=Path, default=None, help="default: a new temp dir")
    ap.add_argument("--keep", action="store_true", help="keep the projects, the S3 data and the schema")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.rows, args.pool, args.queries = 5_000, 2_000, 100
    if not Path(TIME).exists():
        sys.exit(f"{TIME} is missing (GNU time: apt-get install time)")
    return args


def main() -> None:
    args = parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="jammi-objstore-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    print(f"work dir: {work} (logs under {logs})")
    began = time.perf_counter()
    schema = new_schema(args.dsn)
    server = start_s3(work / "seaweedfs")
    bucket = f"jammi-bench-{uuid.uuid4().hex[:8]}"
    server.filesystem().create_dir(bucket)
    s3_env = server.env()
    result: dict = {
        "benchmark": "object_store", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(), "machine": machine(), "software": software(), "quick": args.quick,
        "load_average": {"start": [round(x, 2) for x in os.getloadavg()]},
        "machine_note": "2 CPUs shared with other engineers' tests and benchmarks: the load average "
                        "says how busy it was; the two backends ran one after the other, step by step",
        "settings": {"rows": args.rows, "pool": args.pool, "queries": args.queries, "k": 10,
                     "s3": "SeaweedFS `weed server -s3` on localhost (tests/s3_server.py)",
                     "catalog": "local PostgreSQL, a fresh schema", "work_dir": str(work)},
        "definitions": DEFINITIONS, "targets": {k: f"{op} {b}" for k, (op, b) in TARGETS.items()},
        "runs": {b: {} for b in BACKENDS}}
    try:
        pool, pool_info = make_pool(args.pool)
        result["pool"] = pool_info
        rng = np.random.default_rng([SEED, args.rows, 23])
        frame = draw_rows(pool, args.rows, rng)
        csv = work / "data" / "items.csv"
        write_csv(frame, csv)
        projects = {
            "local": write_project(work / "local", csv, "artifacts", None),
            "s3": write_project(work / "s3", csv, f"s3://{bucket}/objstore",
                                {"postgres": args.dsn, "schema": schema})}
        extra = {"local": {}, "s3": s3_env}
        node = {b: work / f"{b}-node-cache" for b in BACKENDS}  # the materialize processes' node

        def each(step: str, run) -> None:
            for backend in BACKENDS:
                result["runs"][backend][step] = run(backend)
            result["derived"] = derive(result["runs"])
            save(result, args.results)

        print(f"{args.rows:,} rows from a pool of {pool_info['size']:,} texts; S3 {server.endpoint} bucket "
              f"{bucket}; catalog schema {schema}")
        each("build", lambda b: jammi(projects[b], ["materialize", "--full"], logs, f"{b}-build", node[b],
                                      extra[b]))
        changed = redraw_rows(frame, pool, 0.01, np.random.default_rng([SEED, args.rows, 24]))
        write_csv(frame, csv)
        each("refresh_1pct", lambda b: {**jammi(projects[b], ["materialize"], logs, f"{b}-refresh", node[b],
                                                extra[b]), "changed_rows": changed})
        queries = work / "queries.json"
        texts = pd.Series(pool["title"]).sample(args.queries + 1, random_state=SEED).tolist()
        queries.write_text(json.dumps(texts), encoding="utf-8")
        each("search", lambda b: search_probe(projects[b], queries, logs, f"{b}-search",
                                              work / f"{b}-fresh-cache-{uuid.uuid4().hex[:6]}", extra[b]))
        count_sql = f"SELECT count(*) AS n FROM {TABLE_VIEW}"
        each("sql_count", lambda b: {**(p := jammi(projects[b], ["sql", count_sql], logs, f"{b}-sql", node[b],
                                                   extra[b])), "rows_counted": rows_counted(p)})
    finally:
        from tests import s3_server

        s3_server.stop(server)
        if not args.keep:
            drop_schema(args.dsn, schema)
            shutil.rmtree(work, ignore_errors=True)
    result["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - began, 1)
    result["derived"] = derive(result["runs"])
    save(result, args.results)
    print_report(result)
    print(f"\n{result['seconds']:.0f} s in all; wrote {args.results}")


if __name__ == "__main__":
    main()
