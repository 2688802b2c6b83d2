"""Faults on object storage and the PostgreSQL catalog: SIGKILLs, an S3 outage, killed catalog
connections, with a reader that must never see half a version (issue 23, item 8).

The project of bench/kill_trials.py (`--rows` demo products, one pipeline), with `artifact_dir:
s3://BUCKET/faults-N` on a SeaweedFS server this script starts (tests/s3_server.py) and
`catalog: {postgres: DSN, schema: NAME}` in a fresh schema of the local PostgreSQL (`--dsn`,
dropped afterwards). Two phases, each its own project, schema and reader:

- `flat`: one CSV source; each trial changes the source at random (kill_trials.mutate) and runs
  `jammi materialize` (`--full` in about a third of the trials, else a refresh);
- `partitions`: the source is `--partitions` daily JSON Lines files; each trial changes one day
  and runs `jammi materialize --partition DAY` (`--full` in a fifth), after a first backfill.

A trial SIGKILLs the run's process group at a random moment: during start-up, a random time into
a step (extract, validate, embed, index, quality report; the delay drawn from that step's time
in an unkilled reference run), or at the end of the embed step, where the version's files are
written and the commit is made. Then the same run again (for a partition: the same day) must
finish within `--timeout` seconds (else a hang), and afterwards no table may be left building,
`jammi verify` must find source = table = index (a missing key is a lost row, any other
difference a violation), the catalog must serve no key twice, and search must answer.

Meanwhile a reader process with a node cache (JAMMI_CACHE_DIR) and working directory of its own
loops over the same project: `SELECT count(*), count(DISTINCT _row_id)` over the embedding
table's view (Jammi.sql, what `jammi sql` runs) and, every third answer, a search. An answer is
half-served when a key appears twice, or its count is not the row count of any version committed
in PostgreSQL (`table_versions.rows`, read before and after each answer and polled between);
stale (reported, not half-served) when its count is a committed version's but not that of the
version the catalog served at any moment of the answer.
Errors are allowed before the first build (their words are recorded: they must say so) and
while a service is down on purpose; any other is a violation.

Two more runs of the flat project, after the kills:

- `s3_restart`: the S3 server is stopped (gracefully) while the run is in its embed step and
  started again on the same ports over the same data once the run has ended (or after
  `--outage` seconds): the run must fail with an error naming the store; the next run must
  complete and verify clean;
- `pg_terminate`: from the run's embed step on, every PostgreSQL backend of the run's processes
  (application `jammi-catalog` and a client port that one of the run's processes holds, so no
  one else's connection) is ended with pg_terminate_backend, again every `--terminate-every` seconds: the
  run completes or fails with an error naming the catalog; the next run completes and verifies.

Prints a table and writes bench/results/object_store_faults.json with {"trials", "kills",
"hangs", "lost_rows", "duplicated_keys", "half_served", "violations", "reader", "s3_restart",
"pg_terminate"} and the details.

    flock -s /tmp/jammi-bench.lock python bench/object_store_faults.py    # about 15 min on 2 CPUs
    python bench/object_store_faults.py [--kills 30] [--rows 300] [--partitions 3] [--timeout 240]
        [--seed 11] [--dsn postgresql://127.0.0.1:5432/test] [--outage 60] [--terminate-every 3]
        [--work-dir DIR] [--keep] [--out bench/results/object_store_faults.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.kill_trials import (  # noqa: E402
    PIPELINE,
    STEP_WEIGHTS,
    STEPS,
    Run,
    check_table,
    day_path,
    make_project,
    mutate,
    write_day,
    write_source,
)
from bench.object_store import DSN, drop_schema, new_schema, start_s3  # noqa: E402
from bench.scale import _commit, machine, software  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "object_store_faults.json"
EMBED = f"{PIPELINE}_embeddings"
COMMIT = "commit"  # the end of the embed step: the version's files written, the commit made

# The reader: argv = project, dsn, schema, out (JSON Lines), stop file. Loops until the stop
# file exists; each answer is one line {t, kind, n, distinct, versions, current, error}:
# `versions` every row count committed (table_versions.rows) seen so far, `current` the row
# counts the catalog served (the active table's current version) at some moment during the
# answer: read right before and after it, and by a thread polling between answers.
READER = r"""
import json, sys, threading, time
from pathlib import Path
project_path, dsn, schema, out, stop = sys.argv[1:6]
import psycopg
from jammi.app.facade import Jammi
from jammi.spec.project import load_project
seen, timeline, guard = set(), [], threading.Lock()
SERVED = (f'SELECT COALESCE(v.rows, e.rows_embedded) FROM "{schema}".active_tables a '
          f'JOIN "{schema}".embedding_tables e ON e.table_name = a.table_name '
          f'LEFT JOIN "{schema}".table_versions v ON v.table_name = e.table_name '
          f"AND v.version = e.current_version WHERE a.pipeline = 'PIPE'")
def poll(conn):
    try:
        with conn.transaction():
            rows = conn.execute(f'SELECT rows FROM "{schema}".table_versions').fetchall()
            served = conn.execute(SERVED).fetchone()
    except psycopg.Error:
        return None  # before the schema exists
    with guard:
        seen.update(int(r[0]) for r in rows)
        if served is not None:
            timeline.append((time.time(), int(served[0])))
    return None if served is None else int(served[0])
def poller():
    with psycopg.connect(dsn, autocommit=True, application_name="jammi-faults-reader") as conn:
        while not Path(stop).exists():
            poll(conn)
            time.sleep(0.2)
threading.Thread(target=poller, daemon=True).start()
conn = psycopg.connect(dsn, autocommit=True, application_name="jammi-faults-reader")
jammi = Jammi(load_project(project_path), recover_on_open=False)
sql = "SELECT count(*) AS n, count(DISTINCT _row_id) AS d FROM jammi.PIPE_embeddings"
i = 0
with open(out, "a", encoding="utf-8") as fh:
    while not Path(stop).exists():
        i += 1
        kind = "search" if i % 3 == 0 else "sql"
        row = {"t": time.time(), "kind": kind}
        before = poll(conn)
        try:
            if kind == "sql":
                got = jammi.sql(sql)
                row["n"], row["distinct"] = int(got["n"][0]), int(got["d"][0])
            else:
                hits = jammi.search("PIPE", "waterproof jacket", k=5)
                row["n"], row["distinct"] = len(hits), hits["_row_id"].nunique()
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {err}"[:400]
        after = poll(conn)
        row["t_end"] = time.time()
        with guard:
            row["versions"] = sorted(seen)
            during = {n for t, n in timeline if row["t"] <= t <= row["t_end"]}
        row["current"] = sorted(during | {n for n in (before, after) if n is not None})
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        time.sleep(0.3)
""".replace("PIPE", PIPELINE)


# ---------------------------------------------------------------- services and projects


class Phase:
    """One project on the shared S3 server, in a schema of its own, with its writers' node
    cache, the bench's own node cache (for verify) and a reader."""

    def __init__(self, work: Path, name: str, bucket: str, dsn: str, rows: int, rng: random.Random,
                 partitions: int, s3_env: dict[str, str]):
        self.name, self.dsn, self.schema = name, dsn, new_schema(dsn)
        self.root = work / name
        self.root.mkdir(parents=True)
        self.project_file, self.data, self.rows = make_project(
            self.root, rows, rng, partitions, artifact_dir=f"s3://{bucket}/faults-{name}",
            catalog={"postgres": dsn, "schema": self.schema})
        self.home = self.root / "dagster_home"
        self.days: list[str | None] = sorted(self.rows) if partitions else [None]
        self.writer_env = {**s3_env, "JAMMI_CACHE_DIR": str(work / f"{name}-writer-cache")}
        self.bench_cache = work / f"{name}-bench-cache"
        self.reader_dir = work / f"{name}-reader"
        self.reader_log = self.reader_dir / "answers.jsonl"
        self.stop_file = self.reader_dir / "stop"
        self.reader: subprocess.Popen | None = None
        self.s3_env = s3_env

    def project(self):
        """The project as this bench process's node sees it (its own JAMMI_CACHE_DIR)."""
        from jammi.spec.project import load_project

        os.environ["JAMMI_CACHE_DIR"] = str(self.bench_cache)
        return load_project(self.project_file)

    def run(self, full: bool, day: str | None) -> Run:
        return Run(self.project_file, self.home, full, day, env=self.writer_env)

    def change(self, day: str | None, rng: random.Random, next_id: list[int]) -> None:
        if day is None:
            self.rows = mutate(self.rows, rng, next_id)
            write_source(self.data, self.rows)
        else:
            self.rows[day] = mutate(self.rows[day], rng, next_id)
            write_day(day_path(self.root, day), self.rows[day])

    def start_reader(self) -> None:
        self.reader_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.s3_env, "JAMMI_CACHE_DIR": str(self.reader_dir / "cache"),
               "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT),
               "DAGSTER_HOME": str(self.home)}
        self.reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(self.project_file), self.dsn, self.schema,
             str(self.reader_log), str(self.stop_file)],
            cwd=self.reader_dir, env=env, stdout=(self.reader_dir / "reader.log").open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True)

    def stop_reader(self) -> None:
        if self.reader is None:
            return
        self.stop_file.touch()
        try:
            self.reader.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.reader.pid, 9)
            self.reader.wait()
        if self.reader.returncode not in (0, None):
            tail = (self.reader_dir / "reader.log").read_text(errors="replace").strip().splitlines()[-5:]
            print(f"  ! the {self.name} reader exited {self.reader.returncode}: {' | '.join(tail)}")
        self.reader = None


# ---------------------------------------------------------------- checks


def served_keys(project) -> list:
    """The keys the catalog serves now, read as any client would (published afresh when the
    state in PostgreSQL moved on)."""
    from jammi.tables.catalog import Catalog

    catalog = Catalog(project.artifact_dir)
    if not catalog.exists():
        return []
    with catalog.connect(read_only=True) as con:
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
        if EMBED not in views:
            return []
        return [r[0] for r in con.execute(f"SELECT _row_id FROM {EMBED}").fetchall()]


def check_after(phase: Phase, trial: dict) -> tuple[int, int]:
    """The checks after the next run: nothing building, verify clean, no key twice, search
    answers. Appends problems to `trial`; returns (lost rows, duplicated keys)."""
    project = phase.project()
    lost = twice = 0
    try:
        lost = check_table(project, trial)  # kill_trials' checks: nothing building, verify, search
        keys = served_keys(project)
        twice = sum(n - 1 for n in Counter(keys).values() if n > 1)
        if twice:
            trial["problems"].append(f"{twice} keys served twice")
        trial["served_rows"] = len(keys)
    except Exception as err:  # noqa: BLE001 - any error of a check is a finding
        trial["problems"].append(f"check failed: {type(err).__name__}: {err}")
    trial["lost_rows"], trial["duplicated_keys"] = lost, twice
    return lost, twice


def next_run(phase: Phase, day: str | None, timeout: float, trial: dict) -> bool:
    """The run after a fault: must finish in `timeout` and succeed. False on a hang."""
    nxt = phase.run(False, day)
    code = nxt.finish(timeout)
    trial["next_run_s"] = round(time.monotonic() - nxt.started, 1)
    if code is None:
        trial["problems"].append("the next run hung: " + " | ".join(nxt.lines[-3:]))
        return False
    if code != 0:
        trial["problems"].append(f"the next run failed ({code}): " + " | ".join(nxt.lines[-3:]))
    return True


def read_answers(path: Path, allowed: list[tuple[float, float]]) -> dict:
    """The reader's answers judged: half-served (a key twice, or a count no committed version
    had); stale (a committed version's count, but not one served while the answer was made);
    errors outside the allowed windows (a service down on purpose) other than "does not
    exist yet" before the first answer."""
    answers = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] \
        if path.exists() else []
    half, stale, errors, expected, not_yet, served = [], [], [], [], [], 0
    for a in answers:
        if "error" in a:
            if not served:  # before the first build: judged by its words (the examples)
                not_yet.append(a["error"])
            elif any(lo <= a["t"] <= hi or lo <= a["t_end"] <= hi for lo, hi in allowed):
                expected.append(a["error"])
            else:
                errors.append(a)
            continue
        served += 1
        if a["distinct"] != a["n"]:
            half.append({**a, "why": "a key twice"})
        elif a["kind"] == "sql" and a["n"] not in a["versions"]:
            half.append({**a, "why": "a count no committed version had",
                         "versions": a["versions"][-8:]})
        elif a["kind"] == "sql" and a["n"] not in a["current"]:
            stale.append({**a, "versions": a["versions"][-8:]})
    return {"answers": len(answers), "served": served, "not_built_yet": len(not_yet),
            "not_built_yet_examples": sorted(set(not_yet))[:3],
            "sql": sum(a["kind"] == "sql" and "error" not in a for a in answers),
            "search": sum(a["kind"] == "search" and "error" not in a for a in answers),
            "half_served": len(half), "half_served_examples": half[:5],
            "stale": len(stale), "stale_examples": stale[:5], "errors": len(errors),
            "error_examples": [e["error"] for e in errors[:5]],
            "errors_while_down": len(expected), "errors_while_down_examples": sorted(set(expected))[:3]}


# ---------------------------------------------------------------- trials


def reference(phase: Phase, timeout: float) -> tuple[dict[bool, dict[str, float]], float]:
    """An unkilled full build and refresh (after a backfill of every day for partitions): the
    steps' durations, the start-up time."""
    for day in phase.days[:-1]:
        run = phase.run(False, day)
        if run.finish(timeout) != 0:
            sys.exit(f"{phase.name}: backfill run {day} failed:\n" + "\n".join(run.lines[-30:]))
    durations: dict[bool, dict[str, float]] = {}
    startup = []
    for full in (True, False):
        run = phase.run(full, phase.days[-1])
        if run.finish(timeout) != 0:
            sys.exit(f"{phase.name}: reference run failed:\n" + "\n".join(run.lines[-30:]))
        durations[full] = run.durations()
        startup.append(next(t for t, s, e in run.events if e == "started"))
    print(f"{phase.name} reference: full {durations[True]}, refresh {durations[False]}, "
          f"start-up ~{min(startup):.1f}s", flush=True)
    return durations, min(startup)


def kill_trials(phase: Phase, kills: int, rng: random.Random, timeout: float, next_id: list[int],
                first: int) -> list[dict]:
    """`kills` SIGKILL trials on `phase` (numbered from `first`), each followed by the next run
    and the checks."""
    durations, startup = reference(phase, timeout)
    trials: list[dict] = []
    attempts = 0
    while len(trials) < kills and attempts < kills * 3:
        attempts += 1
        day = rng.choice(phase.days)
        phase.change(day, rng, next_id)
        full = rng.random() < (0.2 if day else 0.35)
        point = rng.choices(["start-up", *STEPS, COMMIT], weights=[1, *STEP_WEIGHTS, 2])[0]
        run = phase.run(full, day)
        if point == "start-up":
            delay = rng.uniform(0.2, startup)
            time.sleep(delay)
            reached = run.proc.poll() is None
        else:
            step = EMBED if point == COMMIT else point
            took = durations[full].get(step, 0.5)
            delay = rng.uniform(0.75 * took, 1.05 * took) if point == COMMIT else rng.uniform(0.0, took + 0.2)
            reached = run.wait_for_step(step, timeout)
            if reached:
                time.sleep(delay)
                reached = run.proc.poll() is None
        if not reached:  # the run ended before the kill point: not a kill trial
            run.finish(timeout)
            continue
        run.kill()
        trial = {"trial": first + len(trials), "phase": phase.name, "full": full, "killed_in": point,
                 "delay_s": round(delay, 2), "problems": [], "attempt": attempts,
                 **({"partition": day} if day else {})}
        try:
            keys = served_keys(phase.project())
            if len(keys) != len(set(keys)):
                trial["problems"].append("after the kill a key is served twice")
        except Exception as err:  # noqa: BLE001 - any reader error is a finding
            trial["problems"].append(f"after the kill the catalog could not be read: {err}")
        trial["hang"] = not next_run(phase, day, timeout, trial)
        check_after(phase, trial)
        trials.append(trial)
        print(f"{trial['trial']:>3} {phase.name:<11}{day or '':<11}{'full' if full else 'refresh':<8} "
              f"killed in {point:<26} +{delay:5.2f}s  next run {trial['next_run_s']:6.1f}s  "
              f"{'; '.join(trial['problems']) or 'ok'}", flush=True)
    return trials


def clear_lines(lines: list[str], *words: str) -> list[str]:
    """The run's output lines that say what failed (an error naming a service)."""
    picked = [ln.strip() for ln in lines if any(w in ln.lower() for w in words)]
    return picked[-4:] or [ln.strip() for ln in lines[-4:]]


def s3_restart_run(phase: Phase, server, rng: random.Random, timeout: float, outage: float,
                   next_id: list[int]) -> tuple[dict, object, tuple[float, float]]:
    """A full build whose S3 server stops in the embed step and starts again once the run
    ended (or after `outage` s). Returns the record, the restarted server, the outage window."""
    from tests import s3_server

    phase.change(None, rng, next_id)
    record: dict = {"problems": []}
    run = phase.run(True, None)
    if not run.wait_for_step(EMBED, timeout):
        record["problems"].append("the run ended before its embed step: " + " | ".join(run.lines[-3:]))
    time.sleep(0.5)
    down = time.time()
    s3_server.stop(server, wait_s=20)
    record["stopped_in"] = next((s for _, s, e in reversed(run.events) if e == "started"), "start-up")
    try:
        code = run.proc.wait(timeout=outage)
    except subprocess.TimeoutExpired:
        code = None
    time.sleep(0.5)  # the run's last lines
    record["run_exit"] = code
    record["run_ended_while_down"] = code is not None
    record["run_s"] = round(time.monotonic() - run.started, 1)
    server = s3_server.restart(server)
    up = time.time()
    record["outage_s"] = round(up - down, 1)
    if code is None:  # still waiting on the store: it must now finish or fail
        code = run.finish(timeout)
        record["run_exit"] = code
        if code is None:
            record["problems"].append("the run during the outage hung after the restart")
    record["error"] = clear_lines(run.lines, "s3", "object store", "endpoint", "bucket")
    named = any(w in " ".join(record["error"]).lower() for w in ("s3://", "object store", "endpoint"))
    record["error_names_store"] = named
    if code == 0:
        record["problems"].append("the run with the store down succeeded (did it write nothing?)")
    elif not named:
        record["problems"].append("the error does not name the store")
    record["hang"] = not next_run(phase, None, timeout, record)
    record["lost_rows"], record["duplicated_keys"] = check_after(phase, record)
    return record, server, (down - 1.0, up + 5.0)


def run_backends(pids: set[int]) -> set[int]:
    """The local TCP ports the processes `pids` (and their children) hold open."""
    import psutil

    ports = set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                ports.update(c.laddr.port for c in p.net_connections(kind="tcp")
                             if c.raddr and c.raddr.port == 5432)
        except psutil.Error:
            continue
    return ports


def terminate_backends(dsn: str, ports: set[int]) -> list[str]:
    """pg_terminate_backend on the jammi-catalog backends whose client port is one of `ports`:
    the last statement of each one ended (a pipeline lock's connection shows its lock)."""
    import psycopg

    if not ports:
        return []
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT left(query, 60), pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name"
            " = 'jammi-catalog' AND client_addr = '127.0.0.1' AND client_port = ANY(%s)",
            [sorted(ports)]).fetchall()
    return [r[0] for r in rows if r[1]]


def pg_terminate_run(phase: Phase, rng: random.Random, timeout: float, every: float,
                     next_id: list[int]) -> tuple[dict, tuple[float, float]]:
    """A full build whose catalog connections are terminated from its embed step on (where the
    version is written and committed), again every `every` s while it runs."""
    phase.change(None, rng, next_id)
    record: dict = {"problems": [], "terminated": 0, "rounds": []}
    run = phase.run(True, None)
    began = time.time()
    if not run.wait_for_step(EMBED, timeout):
        record["problems"].append("the run ended before its embed step: " + " | ".join(run.lines[-3:]))
    time.sleep(rng.uniform(0.5, every))
    while run.proc.poll() is None and time.monotonic() - run.started < timeout:
        step = next((s for _, s, e in reversed(run.events) if e == "started"), "start-up")
        ended = terminate_backends(phase.dsn, run_backends({run.proc.pid}))
        if ended:
            record["terminated"] += len(ended)
            record["rounds"].append({"at_s": round(time.monotonic() - run.started, 1), "step": step,
                                     "backends": len(ended), "last_statements": ended})
        time.sleep(every)
    code = run.finish(timeout)
    record["run_exit"] = code
    record["run_s"] = round(time.monotonic() - run.started, 1)
    record["error"] = clear_lines(run.lines, "postgres", "catalog") if code else []
    if code is None:
        record["problems"].append("the run with its connections terminated hung")
    elif code != 0 and not any("postgres" in ln.lower() for ln in record["error"]):
        record["problems"].append("the run failed without naming the catalog")
    if not record["terminated"]:
        record["problems"].append("no backend of the run was found to terminate")
    record["hang"] = not next_run(phase, None, timeout, record)
    record["lost_rows"], record["duplicated_keys"] = check_after(phase, record)
    return record, (began, time.time())


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=30, help="SIGKILL trials in all (a third on partitions)")
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--partitions", type=int, default=3, help="daily partitions of the second phase")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds a run may take before it is a hang")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--dsn", default=DSN)
    ap.add_argument("--outage", type=float, default=60.0, help="longest S3 outage, seconds")
    ap.add_argument("--terminate-every", type=float, default=3.0)
    ap.add_argument("--work-dir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the projects, the S3 data and the schemas")
    ap.add_argument("--out", type=Path, default=RESULTS)
    return ap.parse_args()


def summarize(result: dict) -> None:
    keys = ("trials", "kills", "hangs", "lost_rows", "duplicated_keys", "half_served", "violations")
    print()
    print("".join(f"{k:<17}" for k in keys))
    print("".join(f"{result[k]!s:<17}" for k in keys))
    for name in ("s3_restart", "pg_terminate"):
        r = result.get(name) or {}
        print(f"{name}: exit {r.get('run_exit')}, next run {r.get('next_run_s')}s, "
              f"{'; '.join(r.get('problems', [])) or 'ok'}; error: {' | '.join(r.get('error', []))[:300]}")
    reader = result["reader"]
    print(f"reader: {reader['answers']} answers ({reader['sql']} sql, {reader['search']} search), "
          f"{reader['half_served']} half-served, {reader['stale']} stale, {reader['errors']} unexpected "
          f"errors, "
          f"{reader['errors_while_down']} while a service was down")


def main() -> None:
    args = parse_args()
    rng = random.Random(args.seed)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="jammi-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    server = start_s3(work / "seaweedfs")
    bucket = f"jammi-faults-{uuid.uuid4().hex[:8]}"
    server.filesystem().create_dir(bucket)
    os.environ.update(server.env())  # this process verifies and reads the tables too
    result: dict = {
        "benchmark": "object_store_faults", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(), "machine": machine(), "software": software(),
        "settings": {"rows": args.rows, "partitions": args.partitions, "seed": args.seed,
                     "timeout_s": args.timeout, "s3": "SeaweedFS `weed server -s3` on localhost "
                     "(tests/s3_server.py)", "catalog": "local PostgreSQL, a fresh schema per phase"},
        "load_average": {"start": [round(x, 2) for x in os.getloadavg()]}}
    phases: list[Phase] = []
    next_id = [10**6]
    flat_kills = args.kills - args.kills // 3 if args.partitions else args.kills
    trials: list[dict] = []
    windows: list[tuple[float, float]] = []
    readers: dict[str, dict] = {}
    try:
        flat = Phase(work, "flat", bucket, args.dsn, args.rows, rng, 0, server.env())
        phases.append(flat)
        flat.start_reader()
        print(f"S3 {server.endpoint} bucket {bucket}; work dir {work}", flush=True)
        trials += kill_trials(flat, flat_kills, rng, args.timeout, next_id, 1)
        print("s3_restart: stopping the S3 server in the embed step of a full build", flush=True)
        result["s3_restart"], server, window = s3_restart_run(flat, server, rng, args.timeout, args.outage,
                                                              next_id)
        windows.append(window)
        print(f"  {result['s3_restart']}", flush=True)
        print("pg_terminate: terminating the run's catalog connections", flush=True)
        result["pg_terminate"], window = pg_terminate_run(flat, rng, args.timeout, args.terminate_every,
                                                          next_id)
        print(f"  {result['pg_terminate']}", flush=True)
        flat.stop_reader()
        readers["flat"] = read_answers(flat.reader_log, windows)
        if args.partitions and args.kills // 3:
            parts = Phase(work, "partitions", bucket, args.dsn, args.rows, rng, args.partitions, server.env())
            phases.append(parts)
            parts.start_reader()
            trials += kill_trials(parts, args.kills // 3, rng, args.timeout, next_id, len(trials) + 1)
            parts.stop_reader()
            readers["partitions"] = read_answers(parts.reader_log, [])
    finally:
        from tests import s3_server

        for phase in phases:
            phase.stop_reader()
        s3_server.stop(server)
        if not args.keep:
            for phase in phases:
                drop_schema(args.dsn, phase.schema)
            shutil.rmtree(work, ignore_errors=True)

    specials = [result[k] for k in ("s3_restart", "pg_terminate")]
    every = trials + specials
    reader = {k: sum(r[k] for r in readers.values()) for k in
              ("answers", "served", "not_built_yet", "sql", "search", "half_served", "stale", "errors",
               "errors_while_down")}
    result.update({
        "trials": len(trials), "kills": len(trials),
        "hangs": sum(bool(t.get("hang")) for t in every),
        "lost_rows": sum(t.get("lost_rows", 0) for t in every),
        "duplicated_keys": sum(t.get("duplicated_keys", 0) for t in every),
        "half_served": reader["half_served"],
        "violations": sum(bool(t["problems"]) for t in every) + reader["errors"],
        "reader": {**reader, "phases": readers},
        "killed_in": dict(Counter(t["killed_in"] for t in trials)),
        "runs": dict(Counter(("partition " if t.get("partition") else "")
                             + ("full" if t["full"] else "refresh") for t in trials)),
        "seconds": round(time.monotonic() - began, 1), "details": trials})
    result["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
    summarize(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
