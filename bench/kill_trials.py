"""Random SIGKILLs over real `jammi materialize` runs, each followed by the next run.

A project with one CSV source (`--rows` demo products) and one pipeline runs under a
DAGSTER_HOME holding the repository's dagster.yaml (so the `embedding_model` pool allows one
step at a time, as on a laptop). Each trial changes the source at random (edits, deletes,
additions), starts `jammi materialize` (a rebuild with `--full` in about a third of the
trials, so blue/green builds, their checks and the switch are in reach, else a refresh) and
SIGKILLs the whole process group at a random moment: during start-up, or a random time into
a randomly chosen step (extract, validate, embed — which holds encoding, the verify window
and the commit — the index build, the quality report), the delay drawn from that step's
duration in an unkilled reference run. Then:

- between runs, the published catalog must open and serve no key twice;
- the next `jammi materialize` must finish within `--timeout` seconds (else a hang) and
  succeed; afterwards no table may be left `building`, `jammi verify` must find source =
  table = index (a missing key counts as a lost row, any other difference as a violation),
  and search must answer.

With `--partitions N`, the source is N daily JSON Lines files (`{date}` in the path, one
partition each): every run is `jammi materialize --partition DAY` of a day drawn at random,
each trial changes that day's rows only, and the next run is the same day's (the run that must
finish the killed one's work); a first backfill runs every day once. Verify then compares
every partition's rows with the table.

Prints a table and writes bench/results/kill_trials.json (`--partitions`:
kill_trials_partitions.json) with {"trials", "hangs", "violations", "lost_rows"} and the details.

    python bench/kill_trials.py [--kills 50] [--rows 800] [--timeout 240] [--seed 7] [--partitions 0]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from jammi.app.facade import Jammi  # noqa: E402
from jammi.app.verify import verify_pipeline  # noqa: E402
from jammi.demo.generate import make_products  # noqa: E402
from jammi.spec.project import load_project  # noqa: E402
from jammi.tables.catalog import STATUS_BUILDING, Catalog  # noqa: E402
from jammi.tables.published import open_published  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "kill_trials.json"
PARTITIONED_RESULTS = ROOT / "bench" / "results" / "kill_trials_partitions.json"
START = date(2025, 1, 1)  # partitions exist once closed: a past window
FIELDS = ["product_id", "title", "description", "category", "brand", "price", "updated_at"]
PIPELINE = "products_pipe"
STEPS = ["raw_products", "validate_products", "products_pipe_embeddings", "products_pipe_ann_index",
         "quality_report"]
STEP_WEIGHTS = [1, 1, 4, 2, 1]
PROGRESS = re.compile(r"^\s+(\S+)\s+(started|done|FAILED)\s*$")


def write_source(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)


def mutate(rows: list[dict], rng: random.Random, next_id: list[int]) -> list[dict]:
    """Edit 0-5% of the rows, delete 0-2%, add 0-2%."""
    rows = [dict(r) for r in rows]
    n = len(rows)
    for r in rng.sample(rows, rng.randint(0, max(1, n // 20))):
        r["description"] = f"{r['description']} (revised {rng.randint(0, 10**6)})"
    for r in rng.sample(rows, rng.randint(0, max(1, n // 50))):
        rows.remove(r)
    extra = make_products(rng.randint(0, max(1, n // 50)), seed=rng.randint(0, 10**6), dirty=False)
    for r in extra:
        r["product_id"] = next_id[0]
        next_id[0] += 1
        rows.append({k: r[k] for k in FIELDS})
    return rows


def day_path(root: Path, day: str) -> Path:
    return root / "data" / "products" / f"{day}.jsonl"


def write_day(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


def make_project(root: Path, rows: int, rng: random.Random, partitions: int = 0,
                 artifact_dir: str = "artifacts", catalog: dict | None = None
                 ) -> tuple[Path, Path, list[dict] | dict[str, list[dict]]]:
    """The project; with `partitions`, its rows split over that many daily files (then the
    records are {day: rows}). `artifact_dir` and `catalog` as in jammi.yaml (an `s3://` URL and
    `{postgres: DSN, schema: NAME}` for bench/object_store_faults.py)."""
    data = root / "data" / "products.csv"
    data.parent.mkdir(parents=True)
    made = make_products(rows, seed=rng.randint(0, 10**6), dirty=False)
    records = [{k: r[k] for k in FIELDS} for r in made]
    columns = {"product_id": "int", "title": "str", "description": "str", "category": "str",
               "brand": "str", "price": {"type": "float", "ge": 0}, "updated_at": "str"}
    source = {"kind": "csv", "path": "data/products.csv", "key": "product_id", "columns": columns}
    if partitions:
        days = [(START + timedelta(days=d)).isoformat() for d in range(partitions)]
        by_day = {day: records[i::partitions] for i, day in enumerate(days)}
        for day, day_rows in by_day.items():
            write_day(day_path(root, day), day_rows)
        source = {"kind": "jsonl", "path": "data/products/{date}.jsonl", "key": "product_id",
                  "columns": columns,
                  "partitions": {"by": "{date}", "granularity": "day", "start": days[0],
                                 "end": (START + timedelta(days=partitions)).isoformat()}}
        records = by_day
    else:
        write_source(data, records)
    doc: dict = {
        "artifact_dir": artifact_dir,
        **({"catalog": catalog} if catalog else {}),
        "sources": {"products": source},
        "pipelines": {PIPELINE: {"source": "products", "text_columns": ["title", "description"],
                                 "keep_tables": 1}},
    }
    (root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")  # the pool limit of the repository
    return root / "jammi.yaml", data, records


class Run:
    """One `jammi materialize` child with its progress lines timed as they arrive."""

    def __init__(self, project: Path, home: Path, full: bool, partition: str | None = None,
                 env: dict[str, str] | None = None):
        """`env`: variables added to this process's (an object store's address, a node cache)."""
        env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(home), "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "jammi_assets.cli", "--project", str(project), "materialize"]
        if partition:
            cmd += ["--partition", partition]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd + (["--full"] if full else []), cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.events: list[tuple[float, str, str]] = []
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            found = PROGRESS.match(line)
            with self.changed:
                self.lines.append(line.rstrip())
                if found:
                    self.events.append((time.monotonic() - self.started, found.group(1), found.group(2)))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for_step(self, step: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not any(s == step and e == "started" for _, s, e in self.events):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    return False
                self.changed.wait(0.05)
        return True

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def finish(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def durations(self) -> dict[str, float]:
        began = {s: t for t, s, e in self.events if e == "started"}
        return {s: t - began[s] for t, s, e in self.events if e == "done" and s in began}


def served_keys(artifact_dir: Path) -> list[str]:
    catalog = Catalog(artifact_dir)
    if not catalog.path.exists():
        return []
    con = open_published(catalog.path)
    try:
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
        if f"{PIPELINE}_embeddings" not in views:
            return []
        return [r[0] for r in con.execute(f"SELECT _row_id FROM {PIPELINE}_embeddings").fetchall()]
    finally:
        con.close()


def check_table(project, trial: dict) -> int:
    """The checks after the run that follows a kill: no table left `building`, `jammi verify`
    finds source = table = index, search answers. Appends what fails to `trial["problems"]`;
    returns the rows lost (source rows the table does not serve)."""
    building = [t.table_name for t in Catalog(project.artifact_dir).tables(status=STATUS_BUILDING)]
    if building:
        trial["problems"].append(f"tables left building: {building}")
    found = verify_pipeline(project, PIPELINE)
    lost = 0
    if found.parity is None:
        trial["problems"].append(f"verify: {found.problem}")
    else:
        lost = found.parity.missing
        rest = {k: v for k, v in found.parity.counts().items() if k != "missing" and v}
        if lost or rest:
            trial["problems"].append(f"verify: {found.parity.counts()}")
    try:
        if Jammi(project, recover_on_open=False).search(PIPELINE, "waterproof jacket", k=3).empty:
            trial["problems"].append("search returned nothing")
    except Exception as err:  # noqa: BLE001 - a search that fails is a finding
        trial["problems"].append(f"search failed: {err}")
    return lost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--rows", type=int, default=800)
    ap.add_argument("--timeout", type=float, default=240.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--partitions", type=int, default=0,
                    help="daily partitions (JSON Lines, one file a day); 0: one CSV, unpartitioned")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    args.out = args.out or (PARTITIONED_RESULTS if args.partitions else RESULTS)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="jammi-kills-"))
    project_file, data, rows = make_project(work, args.rows, rng, args.partitions)
    home = work / "dagster_home"
    project = load_project(project_file)
    next_id = [10**6]
    days = sorted(rows) if args.partitions else [None]
    if args.partitions:  # a first backfill: every day once
        for day in days[:-1]:
            run = Run(project_file, home, False, day)
            if run.finish(args.timeout) != 0:
                sys.exit(f"backfill run {day} failed:\n" + "\n".join(run.lines[-30:]))

    reference: dict[bool, dict[str, float]] = {}
    startup: list[float] = []
    for full in (True, False):
        run = Run(project_file, home, full, days[-1])
        code = run.finish(args.timeout)
        if code != 0:
            sys.exit("reference run failed:\n" + "\n".join(run.lines[-30:]))
        reference[full] = run.durations()
        startup.append(next(t for t, s, e in run.events if e == "started"))
    print(f"reference: full {reference[True]}, refresh {reference[False]}, start-up ~{min(startup):.1f}s")

    trials: list[dict] = []
    hangs = violations = lost_rows = attempts = 0
    began = time.monotonic()
    while len(trials) < args.kills and attempts < args.kills * 3:
        attempts += 1
        day = rng.choice(days)
        if day is None:
            rows = mutate(rows, rng, next_id)
            write_source(data, rows)
        else:
            rows[day] = mutate(rows[day], rng, next_id)
            write_day(day_path(work, day), rows[day])
        full = rng.random() < (0.2 if day else 0.35)
        step = rng.choices(["start-up", *STEPS], weights=[1, *STEP_WEIGHTS])[0]
        run = Run(project_file, home, full, day)
        if step == "start-up":
            delay = rng.uniform(0.2, min(startup))
            time.sleep(delay)
            reached = run.proc.poll() is None
        else:
            delay = rng.uniform(0.0, reference[full].get(step, 0.5) + 0.2)
            reached = run.wait_for_step(step, args.timeout)
            if reached:
                time.sleep(delay)
                reached = run.proc.poll() is None
        if not reached:  # the run ended before the kill point: not a kill trial
            run.finish(args.timeout)
            continue
        run.kill()
        trial = {"trial": len(trials) + 1, "full": full, "killed_in": step, "delay_s": round(delay, 2),
                 "problems": [], **({"partition": day} if day else {})}
        try:
            keys = served_keys(project.artifact_dir)
            twice = [k for k, n in Counter(keys).items() if n > 1]
            if twice:
                trial["problems"].append(f"after the kill a key is served twice: {twice[:3]}")
        except Exception as err:  # noqa: BLE001 - any reader error is a finding
            trial["problems"].append(f"after the kill the catalog could not be read: {err}")

        nxt = Run(project_file, home, False, day)
        code = nxt.finish(args.timeout)
        trial["next_run_s"] = round(time.monotonic() - nxt.started, 1)
        if code is None:
            hangs += 1
            trial["problems"].append("the next run hung: " + " | ".join(nxt.lines[-3:]))
        elif code != 0:
            trial["problems"].append(f"the next run failed ({code}): " + " | ".join(nxt.lines[-3:]))
        trial["lost_rows"] = check_table(project, trial)
        lost_rows += trial["lost_rows"]
        violations += bool([p for p in trial["problems"] if not p.startswith("the next run hung")])
        trials.append(trial)
        print(f"{trial['trial']:>3} {day or '':<11}{'full' if full else 'refresh':<8} killed in {step:<26} "
              f"+{delay:5.2f}s  next run {trial['next_run_s']:6.1f}s  "
              f"{'; '.join(trial['problems']) or 'ok'}", flush=True)

    result = {"trials": len(trials), "hangs": hangs, "violations": violations, "lost_rows": lost_rows,
              "attempts": attempts, "rows": args.rows, "seed": args.seed, "partitions": args.partitions,
              "killed_in": dict(Counter(t["killed_in"] for t in trials)),
              "seconds": round(time.monotonic() - began, 1), "details": trials}
    print()
    print(f"{'trials':<12}{'hangs':<8}{'violations':<12}{'lost_rows':<10}")
    print(f"{len(trials):<12}{hangs:<8}{violations:<12}{lost_rows:<10}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
