"""How whole `jammi materialize` runs scale: rows, reruns, partitions, a real catalogue.

Every run is one `jammi --project P materialize ...` process started under `/usr/bin/time -v`
(wall seconds, "Maximum resident set size", exit code), with DAGSTER_HOME a fresh folder per case;
after the process ends, the case's Dagster instance gives each run's step times (STEP_START to
STEP_SUCCESS / STEP_FAILURE), its own start and end time, the embeddings asset's counts
(rows_encoded, added, changed, deleted, outcome) and every asset check's pass/fail.

Texts: a pool of `--pool` (default 50,000) distinct product titles, the distinct real titles of
../shared/data/walmart-amazon (tableA, tableB) and ../shared/data/amazon-google (Amazon, Google)
topped up with seeded variants (a real title plus a colour, size or pack word). Each pool entry
carries a category and a brand (its own when the source has them, else drawn from the real
values), so a row drawn from the pool has one of at most `--pool` distinct texts.

Cases (`--cases`, default all):

- unpartitioned: one CSV source (id, title, category, brand, price) and one pipeline over
  [title, category, brand] at each of `--sizes` rows (default 100000,1000000): full build, rerun
  with nothing new, rerun after 1% of rows were drawn again from the pool (new title, category
  and brand; texts of the pool, so the model does bounded work, as in the build: the target's
  case), then a rerun after another 1% got new titles outside the pool (one more text each to
  encode: reported beside it, with no target);
- partitions: a JSON Lines source, one file per day, `--partitions` days (default 100) of
  `--partition-rows` rows (default 10,000), partitioned by day, one file a day: backfill days
  1..`--checkpoint` (default 10) in one process, 1% of day checkpoint/2 changed and that
  partition rerun, backfill the remaining days, 1% of day N/2 changed and that partition rerun;
- tableb22k: the real walmart-amazon tableB.csv (a copy in the work dir): full build, rerun
  with nothing new, rerun after 1% of titles changed;
- tableb220k: tableB ten times under new keys (id + k * 1,000,000): full build, all checks passed?

Prints a table of the runs and the acceptance targets, and writes bench/results/scale.json.

    flock /tmp/jammi-bench.lock python bench/scale.py            # most of an hour on 2 CPUs
    flock /tmp/jammi-bench.lock python bench/scale.py --quick    # a few minutes: a smoke test
    python bench/scale.py [--sizes 100000,1000000] [--partitions 100] [--partition-rows 10000]
        [--checkpoint 10] [--cases unpartitioned,partitions,tableb22k,tableb220k]
        [--work-dir DIR] [--keep] [--workers 1] [--results bench/results/scale.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "scale.json"
SHARED = ROOT.parent / "shared" / "data"
WALMART_AMAZON = SHARED / "walmart-amazon"
AMAZON_GOOGLE = SHARED / "amazon-google"
TIME = "/usr/bin/time"
CASES = ("unpartitioned", "partitions", "tableb22k", "tableb220k")
PIPELINE = "items"
TEXT_COLUMNS = ["title", "category", "brand"]
START = date(2025, 1, 1)  # partitions exist once closed: a past window
SEED = 20260101
QUIET_INSTANCE = ("# written by bench/scale.py: a local instance with default storage\n"
                  "telemetry:\n  enabled: false\n")
VARIANT_WORDS = ["black", "white", "red", "blue", "silver", "green", "grey", "pink", "gold", "small",
                 "medium", "large", "xl", "10 inch", "15 inch", "12 oz", "32 gb", "2-pack", "3-pack",
                 "6-pack", "pack of 12", "bundle", "refurbished", "value pack"]
TARGETS = {  # name: (comparison, bound)
    "rss_ratio_1m_over_100k": ("<=", 1.5),
    "rerun_nothing_share_1m": ("<=", 0.05),
    "rerun_1pct_share_1m": ("<=", 0.10),
    "rerun_nothing_22k_seconds": ("<=", 5.0),
    "partition_slowdown": ("<=", 1.2),
    "partition_rerun_ratio": ("<=", 1.5),
    "partition_rerun_encoded_only_changed": ("==", True),
    "tableb220k_blocking_checks_passed": ("==", True),
}
DEFINITIONS = {
    "wall_s": "wall seconds of the whole `jammi materialize` process",
    "peak_rss_mb": "/usr/bin/time -v 'Maximum resident set size' (the process or any child it waited for)",
    "steps": "seconds from STEP_START to STEP_SUCCESS/STEP_FAILURE of each step, from the case's instance",
    "rss_ratio_1m_over_100k": "peak RSS of the full build at the largest size / at the smallest size",
    "rerun_nothing_share_1m": "wall of the rerun with nothing new / wall of the full build, largest size",
    "rerun_1pct_share_1m": "wall of the rerun after 1% of rows were drawn again from the pool / wall "
                           "of the full build, largest size",
    "rerun_1pct_new_share_1m": "wall of the rerun after 1% of rows got new texts outside the pool (each "
                               "one more text to encode) / wall of the full build, largest size: no target",
    "rerun_nothing_22k_seconds": "wall of the tableb22k rerun with nothing new",
    "partition_slowdown": "median run time (Dagster start to end) of the last k partition runs / of the "
                          "first k, k = min(10, partitions // 2), partitions in order over both backfills",
    "partition_rerun_ratio": "process wall of the 1% one-partition rerun with all partitions materialized / "
                             "with `checkpoint` partitions materialized",
    "partition_rerun_ratio_run_time": "the same ratio by the Dagster runs' own start-to-end time",
    "partition_rerun_encoded_only_changed": "rows_encoded == changed rows, both one-partition reruns",
    "tableb220k_blocking_checks_passed": "every blocking (ERROR) asset check of the tableb220k full build "
                                         "passed: the recall check among them, which ties once failed",
    "tableb220k_all_checks_passed": "every asset check passed, the warnings too: no target, since tableB "
                                    "ten times under new keys does repeat each text ten times, and the "
                                    "exact- and near-duplicate warnings are right to say so",
}


# ---------------------------------------------------------------- the pool of texts


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def _read(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    if not path.exists():
        sys.exit(f"{path} is missing: this benchmark reads ../shared/data (walmart-amazon, amazon-google)")
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)


def real_products() -> tuple[list[dict], list[str], list[str]]:
    """The real (title, category, brand) records in a fixed order, and the distinct real categories
    and brands. Walmart-Amazon is UTF-8 with category and brand; Amazon-Google is cp1252, its
    brand is `manufacturer`, it has no category."""
    records: list[dict] = []
    for name in ("tableA.csv", "tableB.csv"):
        frame = _read(WALMART_AMAZON / name)
        records += [{"title": t, "category": c, "brand": b}
                    for t, c, b in zip(frame["title"], frame["category"], frame["brand"], strict=True)]
    for name, column in (("Amazon.csv", "title"), ("GoogleProducts.csv", "name")):
        frame = _read(AMAZON_GOOGLE / name, encoding="cp1252")
        records += [{"title": t, "category": "", "brand": b}
                    for t, b in zip(frame[column], frame["manufacturer"], strict=True)]
    records = [{k: _clean(v) for k, v in r.items()} for r in records]
    categories = sorted({r["category"] for r in records if r["category"]})
    brands = sorted({r["brand"] for r in records if r["brand"]})
    return records, categories, brands


def make_pool(size: int, seed: int = SEED) -> tuple[pd.DataFrame, dict]:
    """`size` distinct titles with a category and brand each: the distinct real titles (first
    occurrence), then seeded variants of them ("<title> - <word>") until `size`."""
    rng = np.random.default_rng(seed)
    records, categories, brands = real_products()
    pool: dict[str, tuple[str, str]] = {}
    for r in records:
        if r["title"] and r["title"] not in pool:
            category = r["category"] or categories[rng.integers(len(categories))]
            brand = r["brand"] or brands[rng.integers(len(brands))]
            pool[r["title"]] = (category, brand)
    real = list(pool)
    real_n = len(real)
    if size < real_n:
        real = [real[i] for i in sorted(rng.choice(real_n, size, replace=False))]
        pool = {t: pool[t] for t in real}
    while len(pool) < size:
        base = real[rng.integers(len(real))]
        word = VARIANT_WORDS[rng.integers(len(VARIANT_WORDS))]
        variant = f"{base} - {word}"
        if variant not in pool:
            pool[variant] = pool[base]
    frame = pd.DataFrame({"title": list(pool), "category": [c for c, _ in pool.values()],
                          "brand": [b for _, b in pool.values()]})
    info = {"size": len(frame), "real_titles": min(real_n, size), "variants": max(0, size - real_n),
            "categories": len(categories), "brands": len(brands), "seed": seed}
    return frame, info


def draw_rows(pool: pd.DataFrame, n: int, rng: np.random.Generator, first_id: int = 1) -> pd.DataFrame:
    """`n` rows with int keys from `first_id`, each a uniform draw from the pool, and a price."""
    picks = rng.integers(0, len(pool), n)
    return pd.DataFrame({
        "id": np.arange(first_id, first_id + n, dtype=np.int64),
        "title": pool["title"].to_numpy()[picks],
        "category": pool["category"].to_numpy()[picks],
        "brand": pool["brand"].to_numpy()[picks],
        "price": np.round(rng.uniform(1.0, 500.0, n), 2),
    })


def redraw_rows(frame: pd.DataFrame, pool: pd.DataFrame, share: float, rng: np.random.Generator) -> int:
    """Give `share` of the rows (at least one, chosen with `rng`) the title, category and brand of
    another pool entry, drawn as the build drew them. Returns how many rows changed."""
    n = max(1, int(len(frame) * share))
    rows = np.sort(rng.choice(len(frame), n, replace=False))
    picks = rng.integers(0, len(pool), n)
    before = frame.iloc[rows][TEXT_COLUMNS].to_numpy()
    for column in TEXT_COLUMNS:
        frame.iloc[rows, frame.columns.get_loc(column)] = pool[column].to_numpy()[picks]
    return int((frame.iloc[rows][TEXT_COLUMNS].to_numpy() != before).any(axis=1).sum())


def change_titles(frame: pd.DataFrame, share: float, rng: np.random.Generator, key: str = "id") -> int:
    """Give `share` of the rows (at least one, chosen with `rng`) a new title outside the pool and
    distinct per row, so each is one more text to encode. Returns how many rows changed."""
    n = max(1, int(len(frame) * share))
    rows = np.sort(rng.choice(len(frame), n, replace=False))
    col = frame.columns.get_loc("title")
    keys = frame[key].to_numpy()[rows]
    titles = frame["title"].to_numpy()[rows]
    frame.iloc[rows, col] = [f"{t} (rev 2 #{k})" for t, k in zip(titles, keys, strict=True)]
    return n


# ---------------------------------------------------------------- projects


def write_project(root: Path, source: dict) -> Path:
    """A project with one source `items` and one pipeline over [title, category, brand], default
    model and settings; a fresh DAGSTER_HOME beside it."""
    doc = {"artifact_dir": "artifacts", "sources": {"items": source},
           "pipelines": {PIPELINE: {"source": "items", "text_columns": TEXT_COLUMNS}}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    home = root / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(QUIET_INSTANCE, encoding="utf-8")
    return root / "jammi.yaml"


def csv_source(path: str, extra_columns: dict | None = None) -> dict:
    """A csv source keyed by int `id` with title, category, brand, price (and `extra_columns`)."""
    columns = {"id": {"type": "int", "nullable": False}, "title": "str", "category": "str",
               "brand": "str", **(extra_columns or {}), "price": {"type": "float", "ge": 0}}
    return {"kind": "csv", "path": path, "key": "id", "columns": columns}


def jsonl_source(partitions: int) -> dict:
    """A JSON Lines source, one file and one partition per day (`{date}` in the path: a
    partition's run reads its own file; partitions by a timestamp column read every file)."""
    end = START + timedelta(days=partitions)  # `end` is exclusive (jammi.spec.automation)
    return {"kind": "jsonl", "path": "data/reviews/{date}.jsonl", "key": "id",
            "partitions": {"by": "{date}", "granularity": "day", "start": START.isoformat(),
                           "end": end.isoformat()},
            "columns": {"id": {"type": "int", "nullable": False}, "title": "str", "category": "str",
                        "brand": "str", "price": {"type": "float", "ge": 0}, "created_at": "datetime"}}


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, encoding="utf-8")


# ---------------------------------------------------------------- one process, its runs


def jammi_command() -> list[str]:
    """The `jammi` console script of this interpreter's environment, else its module."""
    script = Path(sys.executable).parent / "jammi"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jammi_assets.cli"]


def run_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_DEPLOYMENT", "JAMMI_PROJECT")}
    env.update(DAGSTER_HOME=str(home), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(ROOT))
    return env


def parse_time_v(text: str) -> dict:
    """Peak RSS (MB) and GNU time's own elapsed seconds from `/usr/bin/time -v` output."""
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    elapsed = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    seconds = None
    if elapsed:
        seconds = sum(float(p) * 60 ** i for i, p in enumerate(reversed(elapsed.group(1).split(":"))))
    return {"peak_rss_mb": round(int(found.group(1)) / 1024, 1) if found else None,
            "time_elapsed_s": round(seconds, 2) if seconds is not None else None}


def open_instance(home: Path):
    import dagster as dg

    return dg.DagsterInstance.from_config(str(home))


def run_ids(home: Path) -> set[str]:
    with open_instance(home) as instance:
        return {r.dagster_run.run_id for r in instance.get_run_records()}


def materialize(project: Path, args: list[str], logs: Path, name: str) -> dict:
    """One `jammi --project P materialize ARGS` under /usr/bin/time -v: its wall, peak RSS,
    exit code and the Dagster runs it made (read from the case's instance afterwards)."""
    home = project.parent / "dagster_home"
    before = run_ids(home)
    logs.mkdir(parents=True, exist_ok=True)
    log, timing = logs / f"{name}.log", logs / f"{name}.time"
    cmd = [TIME, "-v", "-o", str(timing), *jammi_command(), "--project", str(project), "materialize", *args]
    t0 = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        code = subprocess.run(cmd, cwd=project.parent, env=run_env(home), stdout=out,
                              stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    found = {"name": name, "args": args, "exit_code": code, "wall_s": round(wall, 2),
             **parse_time_v(timing.read_text(encoding="utf-8") if timing.exists() else ""), "log": str(log)}
    found["runs"] = read_runs(home, run_ids(home) - before)
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-8:]
        found["error_tail"] = tail
        print(f"    ! {name} exited {code}; log {log}:\n      " + "\n      ".join(tail))
    encoded = [r["embeddings"].get("rows_encoded") for r in found["runs"] if r.get("embeddings")]
    print(f"    {name:<28} exit {code}  {wall:8.1f} s  {found['peak_rss_mb'] or 0:8.0f} MB  "
          f"{len(found['runs'])} run(s)  rows_encoded {sum(e or 0 for e in encoded)}", flush=True)
    return found


def step_times(entries) -> dict[str, float]:
    """Seconds per step key from STEP_START to STEP_SUCCESS or STEP_FAILURE."""
    began: dict[str, float] = {}
    took: dict[str, float] = {}
    for entry in entries:
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type_value == "STEP_START":
            began[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in began:
            took[event.step_key] = round(entry.timestamp - began[event.step_key], 3)
    return took


def _plain(value):
    """A metadata value as JSON can hold it."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def embeddings_counts(entries) -> dict:
    """The counts of the run's `<pipeline>_embeddings` materialization (the last one if several)."""
    wanted = ("rows_encoded", "added", "changed", "deleted", "unchanged", "outcome", "version",
              "rows_embedded", "table_status", "model_loaded", "seconds")
    found: dict = {}
    for entry in entries:
        event = entry.dagster_event
        if event is None or event.event_type_value != "ASSET_MATERIALIZATION":
            continue
        mat = event.step_materialization_data.materialization
        if mat.asset_key.to_user_string() != f"{PIPELINE}_embeddings":
            continue
        meta = {k: v.value for k, v in mat.metadata.items()}
        found = {k: _plain(meta[k]) for k in wanted if k in meta}
    return found


def check_results(entries) -> list[dict]:
    """Every ASSET_CHECK_EVALUATION of the run: asset, check, passed, severity."""
    out = []
    for entry in entries:
        event = entry.dagster_event
        if event is None or event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        data = event.event_specific_data
        out.append({"asset": data.asset_key.to_user_string(), "check": data.check_name,
                    "passed": bool(data.passed), "severity": _plain(getattr(data.severity, "value", None))})
    return out


def read_runs(home: Path, ids: set[str]) -> list[dict]:
    """Each run's partition, status, own start/end time, step times, embeddings counts and
    check results, in partition order (then start time)."""
    out = []
    with open_instance(home) as instance:
        for run_id in ids:
            run = instance.get_run_by_id(run_id)
            stats = instance.get_run_stats(run_id)
            entries = instance.all_logs(run_id)
            start, end = stats.start_time, stats.end_time
            out.append({
                "run_id": run_id, "status": run.status.value,
                "partition": run.tags.get("dagster/partition") or run.tags.get("jammi/partition"),
                "start_time": start, "end_time": end,
                "run_s": round(end - start, 3) if start and end else None,
                "steps": step_times(entries), "embeddings": embeddings_counts(entries),
                "checks": check_results(entries)})
    return sorted(out, key=lambda r: (r["partition"] or "", r["start_time"] or 0.0))


def encoded(proc: dict) -> int | None:
    """rows_encoded summed over the process's runs (None when no run reported it)."""
    values = [r["embeddings"]["rows_encoded"] for r in proc["runs"] if "rows_encoded" in r["embeddings"]]
    return sum(values) if values else None


def all_checks_passed(proc: dict) -> bool | None:
    checks = [c for r in proc["runs"] for c in r["checks"]]
    return all(c["passed"] for c in checks) if checks else None


# ---------------------------------------------------------------- cases


def three_runs(project: Path, logs: Path, label: str, change, new_texts=None) -> dict:
    """Full build, rerun with nothing new, and (after `change()` rewrote the source and returned
    how many rows it changed) a rerun: the case's three processes; with `new_texts`, one more
    change and rerun after them (`rerun_1pct_new`). Stops at a failed process."""
    runs = {"full": materialize(project, ["--full"], logs, f"{label}-full")}
    if runs["full"]["exit_code"] == 0:
        runs["rerun_nothing"] = materialize(project, [], logs, f"{label}-rerun-nothing")
        changed = change()
        runs["rerun_1pct"] = materialize(project, [], logs, f"{label}-rerun-1pct")
        runs["rerun_1pct"]["changed_rows"] = changed
        if new_texts is not None and runs["rerun_1pct"]["exit_code"] == 0:
            changed = new_texts()
            runs["rerun_1pct_new"] = materialize(project, [], logs, f"{label}-rerun-1pct-new")
            runs["rerun_1pct_new"]["changed_rows"] = changed
    return runs


def case_unpartitioned(size: int, pool: pd.DataFrame, work: Path, logs: Path) -> dict:
    """A csv source of `size` rows drawn from the pool: full build, rerun nothing, rerun 1%."""
    root = work / f"unpartitioned_{size}"
    rng = np.random.default_rng([SEED, size])
    frame = draw_rows(pool, size, rng)
    data = root / "data" / "items.csv"
    write_csv(frame, data)
    project = write_project(root, csv_source("data/items.csv"))
    print(f"  unpartitioned, {size:,} rows ({frame['title'].nunique():,} distinct titles) in {root}")

    def change() -> int:
        n = redraw_rows(frame, pool, 0.01, np.random.default_rng([SEED, size, 1]))
        write_csv(frame, data)
        return n

    def new_texts() -> int:
        n = change_titles(frame, 0.01, np.random.default_rng([SEED, size, 2]))
        write_csv(frame, data)
        return n

    return {"rows": size, "distinct_titles": int(frame["title"].nunique()), "project": str(project),
            **three_runs(project, logs, f"unpartitioned-{size}", change, new_texts)}


def day_key(day: int) -> str:
    """The partition key of day `day` (1-based)."""
    return (START + timedelta(days=day - 1)).isoformat()


def day_frame(pool: pd.DataFrame, day: int, rows: int) -> pd.DataFrame:
    """Day `day`'s rows (seeded per day): keys unique across days, created_at inside the day."""
    rng = np.random.default_rng([SEED, 7, day])
    frame = draw_rows(pool, rows, rng, first_id=(day - 1) * rows + 1)
    midnight = datetime.combine(START + timedelta(days=day - 1), datetime.min.time(), UTC)
    seconds = np.sort(rng.integers(0, 86400, rows))
    frame["created_at"] = [(midnight + timedelta(seconds=int(s))).strftime("%Y-%m-%dT%H:%M:%S")
                           for s in seconds]
    return frame


def write_day(frame: pd.DataFrame, root: Path, day: int) -> None:
    path = root / "data" / "reviews" / f"{START + timedelta(days=day - 1):%Y-%m-%d}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_json(path, orient="records", lines=True, force_ascii=False)


def rerun_partition(pool, root: Path, project: Path, logs: Path, day: int, rows: int, label: str) -> dict:
    """Change 1% of day `day`'s rows (new titles outside the pool), rerun that one partition."""
    frame = day_frame(pool, day, rows)
    changed = change_titles(frame, 0.01, np.random.default_rng([SEED, 8, day]))
    write_day(frame, root, day)
    proc = materialize(project, ["--select", PIPELINE, "--partition", day_key(day)], logs, label)
    run = proc["runs"][0] if proc["runs"] else {}
    proc.update(partition=day_key(day), changed_rows=changed, rows_encoded=encoded(proc),
                run_s=run.get("run_s"))
    return proc


def case_partitions(pool: pd.DataFrame, work: Path, logs: Path, partitions: int, rows: int,
                    checkpoint: int, workers: int) -> dict:
    """Backfill days 1..checkpoint, rerun day ceil(checkpoint/2) after 1% changed, backfill the
    rest, rerun day ceil(partitions/2) after 1% changed."""
    root = work / f"partitions_{partitions}x{rows}"
    for day in range(1, partitions + 1):
        write_day(day_frame(pool, day, rows), root, day)
    project = write_project(root, jsonl_source(partitions))
    print(f"  partitions: {partitions} days x {rows:,} rows in {root}")
    select = ["--select", PIPELINE, "--workers", str(workers)]
    first = materialize(project, [*select, "--partition", f"{day_key(1)}...{day_key(checkpoint)}"], logs,
                        f"partitions-backfill-1-{checkpoint}")
    out = {"partitions": partitions, "rows_per_partition": rows, "checkpoint": checkpoint,
           "workers": workers, "project": str(project), "backfill_first": first}
    if first["exit_code"] != 0:
        return out
    early = math.ceil(checkpoint / 2)
    out["rerun_at_checkpoint"] = rerun_partition(pool, root, project, logs, early, rows,
                                                 f"partitions-rerun-day{early}")
    if partitions > checkpoint:
        out["backfill_rest"] = materialize(
            project, [*select, "--partition", f"{day_key(checkpoint + 1)}...{day_key(partitions)}"], logs,
            f"partitions-backfill-{checkpoint + 1}-{partitions}")
    late = math.ceil(partitions / 2)
    out["rerun_at_all"] = rerun_partition(pool, root, project, logs, late, rows,
                                          f"partitions-rerun-day{late}")
    runs = first["runs"] + out.get("backfill_rest", {}).get("runs", [])
    out["partition_runs"] = [{"partition": r["partition"], "run_s": r["run_s"], "status": r["status"],
                              "rows_encoded": r["embeddings"].get("rows_encoded")} for r in runs]
    return out


def case_tableb22k(work: Path, logs: Path) -> dict:
    """The real tableB.csv (copied into the work dir): full build, rerun nothing, rerun 1%."""
    root = work / "tableb22k"
    frame = _read(WALMART_AMAZON / "tableB.csv")
    data = root / "data" / "tableB.csv"
    data.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(WALMART_AMAZON / "tableB.csv", data)
    project = write_project(root, csv_source("data/tableB.csv", {"modelno": "str"}))
    print(f"  tableb22k: {len(frame):,} rows of {WALMART_AMAZON / 'tableB.csv'} in {root}")

    def change() -> int:
        n = change_titles(frame, 0.01, np.random.default_rng([SEED, 22]))
        write_csv(frame, data)
        return n

    return {"rows": len(frame), "project": str(project), **three_runs(project, logs, "tableb22k", change)}


def case_tableb220k(work: Path, logs: Path) -> dict:
    """tableB ten times under keys id + k * 1,000,000: a full build and its checks."""
    root = work / "tableb220k"
    base = _read(WALMART_AMAZON / "tableB.csv")
    copies = []
    for k in range(10):
        part = base.copy()
        part["id"] = (part["id"].astype(np.int64) + k * 1_000_000).astype(str)
        copies.append(part)
    frame = pd.concat(copies, ignore_index=True)
    write_csv(frame, root / "data" / "tableB_x10.csv")
    project = write_project(root, csv_source("data/tableB_x10.csv", {"modelno": "str"}))
    print(f"  tableb220k: {len(frame):,} rows in {root}")
    full = materialize(project, ["--full"], logs, "tableb220k-full")
    return {"rows": len(frame), "project": str(project), "full": full,
            "checks_passed": all_checks_passed(full),
            "error_checks_passed": all(c["passed"] for r in full["runs"] for c in r["checks"]
                                       if c["severity"] == "ERROR"),
            "checks_failed": [c for r in full["runs"] for c in r["checks"] if not c["passed"]]}


# ---------------------------------------------------------------- figures


def _ok(proc: dict | None) -> bool:
    return bool(proc) and proc["exit_code"] == 0


def _ratio(a, b) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def derive(cases: dict) -> dict:
    """The acceptance figures; None where a case did not run or a process failed."""
    d: dict = dict.fromkeys(TARGETS)
    sizes = cases.get("unpartitioned") or {}
    if sizes:
        small, large = sizes[min(sizes, key=int)], sizes[max(sizes, key=int)]
        if _ok(small.get("full")) and _ok(large.get("full")):
            d["rss_ratio_1m_over_100k"] = _ratio(large["full"]["peak_rss_mb"], small["full"]["peak_rss_mb"])
        if _ok(large.get("full")) and _ok(large.get("rerun_nothing")):
            d["rerun_nothing_share_1m"] = _ratio(large["rerun_nothing"]["wall_s"], large["full"]["wall_s"])
        if _ok(large.get("full")) and _ok(large.get("rerun_1pct")):
            d["rerun_1pct_share_1m"] = _ratio(large["rerun_1pct"]["wall_s"], large["full"]["wall_s"])
        if _ok(large.get("full")) and _ok(large.get("rerun_1pct_new")):
            d["rerun_1pct_new_share_1m"] = _ratio(large["rerun_1pct_new"]["wall_s"], large["full"]["wall_s"])
    t22 = cases.get("tableb22k") or {}
    if _ok(t22.get("rerun_nothing")):
        d["rerun_nothing_22k_seconds"] = t22["rerun_nothing"]["wall_s"]
    part = cases.get("partitions") or {}
    times = [r["run_s"] for r in part.get("partition_runs", []) if r["run_s"] is not None]
    if len(times) >= 2:
        k = min(10, len(times) // 2)
        d["partition_slowdown"] = _ratio(statistics.median(times[-k:]), statistics.median(times[:k]))
        d["partition_slowdown_k"] = k
    early, late = part.get("rerun_at_checkpoint"), part.get("rerun_at_all")
    if _ok(early) and _ok(late):
        d["partition_rerun_ratio"] = _ratio(late["wall_s"], early["wall_s"])
        d["partition_rerun_ratio_run_time"] = _ratio(late["run_s"], early["run_s"])
        d["partition_rerun_encoded_only_changed"] = all(
            r["rows_encoded"] == r["changed_rows"] for r in (early, late))
    if "tableb220k" in cases and _ok(cases["tableb220k"].get("full")):
        d["tableb220k_blocking_checks_passed"] = cases["tableb220k"]["error_checks_passed"]
        d["tableb220k_all_checks_passed"] = cases["tableb220k"]["checks_passed"]
    return d


def verdict(name: str, value) -> str:
    if value is None:
        return "n/a"
    op, bound = TARGETS[name]
    ok = value <= bound if op == "<=" else value == bound
    return "pass" if ok else "FAIL"


# ---------------------------------------------------------------- the report


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "arch": platform.machine(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def software() -> dict:
    found = {"python": platform.python_version()}
    for dist in ("torch", "sentence-transformers", "duckdb", "dagster", "pandas", "pyarrow", "usearch"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


def top_steps(proc: dict, n: int = 3) -> str:
    """The `n` longest steps over the process's runs (summed per step key)."""
    total: dict[str, float] = {}
    for run in proc["runs"]:
        for step, s in run["steps"].items():
            total[step] = total.get(step, 0.0) + s
    best = sorted(total.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} {v:.1f}" for k, v in best)


def table_rows(cases: dict) -> list[tuple[str, str, dict]]:
    """(case, run, process record) for every process, in the order they ran."""
    out = []
    for size, case in (cases.get("unpartitioned") or {}).items():
        out += [(f"{int(size):,} rows", run, case[run]) for run in ("full", "rerun_nothing", "rerun_1pct",
                                                                     "rerun_1pct_new") if run in case]
    part = cases.get("partitions") or {}
    label = f"{part.get('partitions')}x{part.get('rows_per_partition')}"
    for run in ("backfill_first", "rerun_at_checkpoint", "backfill_rest", "rerun_at_all"):
        if run in part:
            name = run + (f" ({part[run]['partition']})" if "partition" in part[run] else "")
            out.append((f"partitions {label}", name, part[run]))
    for name in ("tableb22k", "tableb220k"):
        case = cases.get(name) or {}
        out += [(f"{name} ({case['rows']:,})", run, case[run])
                for run in ("full", "rerun_nothing", "rerun_1pct") if run in case]
    return out


def print_report(result: dict) -> None:
    cases = result["cases"]
    print(f"\n{'case':<22}{'run':<32}{'exit':>5}{'wall s':>9}{'RSS MB':>9}{'encoded':>10}  top steps (s)")
    for case, run, proc in table_rows(cases):
        enc = encoded(proc)
        print(f"{case:<22}{run:<32}{proc['exit_code']:>5}{proc['wall_s']:>9.1f}"
              f"{proc['peak_rss_mb'] or 0:>9.0f}{'' if enc is None else enc:>10}  {top_steps(proc)}")
    part = cases.get("partitions") or {}
    if part.get("partition_runs"):
        times = [r["run_s"] for r in part["partition_runs"]]
        print(f"\npartition runs (Dagster start to end, s, in partition order): "
              f"{', '.join(f'{t:.1f}' if t is not None else '-' for t in times)}")
        for key in ("rerun_at_checkpoint", "rerun_at_all"):
            if key in part:
                r = part[key]
                print(f"{key} {r['partition']}: changed {r['changed_rows']}, rows_encoded "
                      f"{r['rows_encoded']}, run {r['run_s']} s, process {r['wall_s']} s")
    if "tableb220k" in cases:
        failed = cases["tableb220k"]["checks_failed"]
        print(f"\ntableb220k checks failed: {failed or 'none'}")
    sizes = result["settings"]["sizes"]
    print(f"\n{'figure':<40}{'value':>12}  {'target':<10}result   (1m = {max(sizes):,} rows, "
          f"100k = {min(sizes):,} rows)")
    derived = result["derived"]
    for name, (op, bound) in TARGETS.items():
        value = derived.get(name)
        print(f"{name:<40}{'n/a' if value is None else str(value):>12}  {op + ' ' + str(bound):<10}"
              f"{verdict(name, value)}")
    if derived.get("rerun_1pct_new_share_1m") is not None:
        share = derived["rerun_1pct_new_share_1m"]
        print(f"{'  (rerun_1pct_new_share_1m: new texts)':<40}{share:>12}  no target")
    if derived.get("tableb220k_all_checks_passed") is not None:
        print(f"{'  (tableb220k_all_checks_passed)':<40}{derived['tableb220k_all_checks_passed']!s:>12}  "
              "no target: the duplicate warnings are true of the data")
    if derived.get("partition_rerun_ratio_run_time") is not None:
        print(f"{'  (partition_rerun_ratio by run time)':<40}{derived['partition_rerun_ratio_run_time']:>12}")


def save(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="rows of the unpartitioned builds")
    ap.add_argument("--partitions", type=int, default=100, help="daily partitions")
    ap.add_argument("--partition-rows", type=int, default=10_000, help="rows per partition")
    ap.add_argument("--checkpoint", type=int, default=10,
                    help="partitions of the first backfill (its middle day is rerun after it)")
    ap.add_argument("--workers", type=int, default=1,
                    help="--workers of the backfills (1: the runs one after another, in the process)")
    ap.add_argument("--pool", type=int, default=50_000, help="distinct texts in the pool")
    ap.add_argument("--cases", default=",".join(CASES), help=f"which of {', '.join(CASES)}")
    ap.add_argument("--quick", action="store_true",
                    help="sizes 2000,20000; 12 partitions of 500 rows, checkpoint 5; no tableb220k")
    ap.add_argument("--work-dir", type=Path, default=None, help="default: a new temp dir")
    ap.add_argument("--keep", action="store_true", help="keep each case's project and artifacts")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--merge", action="store_true",
                    help="keep the cases of the existing --results file that this run does not run "
                         "(each case records the commit and date it was measured at)")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.partitions, args.partition_rows, args.checkpoint = "2000,20000", 12, 500, 5
        args.cases = ",".join(c for c in args.cases.split(",") if c != "tableb220k")
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(args.cases) - set(CASES)
    if unknown:
        ap.error(f"unknown case(s) {sorted(unknown)}; choose from {', '.join(CASES)}")
    if not 1 <= args.checkpoint <= args.partitions:
        ap.error("--checkpoint must be between 1 and --partitions")
    if not Path(TIME).exists():
        sys.exit(f"{TIME} is missing (GNU time: apt-get install time)")
    return args


def _commit() -> str:
    """The commit the measured code is at (with `+changes` when the tree differs from it)."""
    root = Path(__file__).resolve().parent.parent
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()

    changed = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + ("+changes" if changed else "")


def main() -> None:
    args = parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="jammi-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    removed = "" if args.keep else "; case folders removed after each case"
    print(f"work dir: {work} (logs under {logs}){removed}")
    began = time.perf_counter()
    pool, pool_info = make_pool(args.pool)
    print(f"pool: {pool_info['size']:,} distinct titles ({pool_info['real_titles']:,} real, "
          f"{pool_info['variants']:,} variants)")
    result = {"benchmark": "scale", "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine(), "software": software(), "quick": args.quick,
              "settings": {"sizes": args.sizes, "partitions": args.partitions,
                           "partition_rows": args.partition_rows, "checkpoint": args.checkpoint,
                           "workers": args.workers, "cases": args.cases, "work_dir": str(work)},
              "pool": pool_info, "definitions": DEFINITIONS,
              "targets": {k: f"{op} {b}" for k, (op, b) in TARGETS.items()}, "cases": {}}
    cases = result["cases"]
    result["measured_at"] = {name: {"commit": _commit(), "date": result["date"]} for name in args.cases}
    if args.merge and args.results.exists():
        earlier = json.loads(args.results.read_text(encoding="utf-8"))
        kept = [name for name in earlier.get("cases", {}) if name not in args.cases]
        cases.update({name: earlier["cases"][name] for name in kept})
        result["measured_at"].update({name: earlier.get("measured_at", {}).get(name) for name in kept})

    def done(folder: Path | None) -> None:
        result["derived"] = derive(cases)
        save(result, args.results)
        if folder is not None and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    if "unpartitioned" in args.cases:
        cases["unpartitioned"] = {}
        for size in args.sizes:
            cases["unpartitioned"][str(size)] = case_unpartitioned(size, pool, work, logs)
            done(work / f"unpartitioned_{size}")
    if "partitions" in args.cases:
        cases["partitions"] = case_partitions(pool, work, logs, args.partitions, args.partition_rows,
                                              args.checkpoint, args.workers)
        done(work / f"partitions_{args.partitions}x{args.partition_rows}")
    if "tableb22k" in args.cases:
        cases["tableb22k"] = case_tableb22k(work, logs)
        done(work / "tableb22k")
    if "tableb220k" in args.cases:
        cases["tableb220k"] = case_tableb220k(work, logs)
        done(work / "tableb220k")
    result["seconds"] = round(time.perf_counter() - began, 1)
    done(None)
    print_report(result)
    print(f"\n{result['seconds']:.0f} s in all; wrote {args.results}")


if __name__ == "__main__":
    main()
