"""A partitioned source's backfill, serial against two workers, and one partition refreshed.

`--partitions` (default 30) daily partitions of `--rows` (default 1,000) demo reviews each, in
one CSV partitioned by its `created_at` column. Every run is the Dagster asset graph of one
partition (`dagster.materialize(..., partition_key=...)`: extract, validate, embed, index,
report), as a run worker executes it:

- unpartitioned: the same CSV declared without partitions, materialized once (the reference
  table);
- serial: one worker process runs the partitions one after another;
- parallel: two worker processes take alternate partitions at the same time (what a run
  queue with two slots, or a backfill under `max_concurrent_runs: 2`, does); the pipeline lock
  lets one of them commit into the table at a time;
- one partition re-materialized after 1% of its rows changed: rows encoded and seconds.

Both backfills must give the unpartitioned table: the same keys, vectors within 1e-5. Prints a
table and writes bench/results/partitions.json.

    python bench/partitions.py [--partitions 30] [--rows 1000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from jammi.demo.generate import make_products, make_reviews  # noqa: E402
from jammi.spec.project import load_project  # noqa: E402
from jammi.tables.catalog import Catalog  # noqa: E402
from jammi.tables.versions import read_current  # noqa: E402
from jammi_assets.launch import worker_env  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "partitions.json"
START = date(2026, 10, 1)
FIELDS = ["review_id", "product_id", "rating", "headline", "body", "created_at"]
WORKER = """
import sys, time, json
import dagster as dg
from jammi.spec.project import load_project
from jammi_assets.definitions import build_assets, build_resources
project = load_project(sys.argv[1])
assets, resources = build_assets(project), build_resources(project)
instance = dg.DagsterInstance.ephemeral()
for key in sys.argv[2:]:
    result = dg.materialize(assets, resources=resources, instance=instance,
                            partition_key=None if key == "-" else key, raise_on_error=False)
    if not result.success:
        sys.exit(f"partition {key} failed")
"""


def write_reviews(path: Path, partitions: int, rows: int, seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    products = make_products(max(200, rows // 5), seed=seed, dirty=False)
    reviews = make_reviews(products, per_product=partitions * rows / len(products), seed=seed)
    reviews = reviews[: partitions * rows]
    for i, r in enumerate(reviews):
        day = START + timedelta(days=i // rows)
        r["created_at"] = f"{day.isoformat()}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00"
        r["body"] = r["body"] or f"Review {i} without a body"
        r["headline"] = f"{r['headline']} (#{i})"  # distinct texts: every row is encoded
    save(path, reviews)
    return reviews


def save(path: Path, reviews: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(reviews)


def project_at(root: Path, data: Path, partitioned: bool) -> Path:
    source = {"kind": "csv", "path": str(data), "key": "review_id",
              "columns": {"review_id": "str", "product_id": "int",
                          "rating": {"type": "int", "ge": 1, "le": 5},
                          "headline": "str", "body": "str", "created_at": "str"}}
    if partitioned:
        source["partitions"] = {"by": "created_at", "granularity": "day", "start": START.isoformat()}
    doc = {"artifact_dir": "artifacts", "sources": {"reviews": source},
           "pipelines": {"reviews_pipe": {"source": "reviews", "text_columns": ["headline", "body"]}}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return root / "jammi.yaml"


def run_workers(project: Path, shares: list[list[str]]) -> float:
    """The workers at once, each with the CPUs shared among them, as `jammi materialize
    --workers N` gives its backfill workers (jammi_assets.launch.worker_env)."""
    env = {**worker_env(len(shares)), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(project), *keys], cwd=ROOT, env=env)
             for keys in shares]
    for p in procs:
        if p.wait() != 0:
            sys.exit("a worker failed")
    return time.perf_counter() - t0


def table(project_file: Path) -> dict[str, np.ndarray]:
    project = load_project(project_file)
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="reviews_pipe")
    rows = read_current(rec.tables_dir, catalog.current_version(rec), ["_row_id", "vector"])
    ids = rows.column("_row_id").to_pylist()
    return dict(zip(ids, np.array(rows.column("vector").to_pylist(), dtype=np.float32), strict=True))


def equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    if sorted(a) != sorted(b):
        return False
    keys = sorted(a)
    return bool(np.abs(np.stack([a[k] for k in keys]) - np.stack([b[k] for k in keys])).max() <= 1e-5)


def last_embed_metadata(project_file: Path) -> dict:
    project = load_project(project_file)
    with Catalog(project.artifact_dir).connect(read_only=True) as con:
        row = con.execute("SELECT rows_encoded, added, changed, deleted, seconds FROM refresh_log"
                          " ORDER BY committed_at DESC LIMIT 1").fetchone()
    return dict(zip(["rows_encoded", "added", "changed", "deleted", "seconds"], row, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--partitions", type=int, default=30)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="jammi-partitions-"))
    data = work / "reviews.csv"
    reviews = write_reviews(data, args.partitions, args.rows)
    keys = [(START + timedelta(days=d)).isoformat() for d in range(args.partitions)]
    print(f"{len(reviews)} reviews in {args.partitions} daily partitions under {work}")

    flat = project_at(work / "flat", data, partitioned=False)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", WORKER, str(flat), "-"], cwd=ROOT, check=True)
    unpartitioned_s = time.perf_counter() - t0
    reference = table(flat)

    serial = project_at(work / "serial", data, partitioned=True)
    serial_s = run_workers(serial, [keys])
    parallel = project_at(work / "parallel", data, partitioned=True)
    parallel_s = run_workers(parallel, [keys[0::2], keys[1::2]])
    serial_equal, parallel_equal = equal(table(serial), reference), equal(table(parallel), reference)

    day = keys[len(keys) // 2]
    changed = [r for r in reviews if r["created_at"].startswith(day)][: max(1, args.rows // 100)]
    for r in changed:
        r["headline"] = f"{r['headline']} (edited)"
    save(data, reviews)
    t0 = time.perf_counter()
    run_workers(serial, [[day]])
    one_s = time.perf_counter() - t0
    one = last_embed_metadata(serial)

    result = {
        "partitions": args.partitions, "rows": len(reviews), "rows_per_partition": args.rows,
        "unpartitioned_seconds": round(unpartitioned_s, 1),
        "serial_seconds": round(serial_s, 1), "parallel_seconds": round(parallel_s, 1),
        "parallel_workers": 2, "speedup": round(serial_s / parallel_s, 2),
        "equal_to_unpartitioned": serial_equal and parallel_equal,
        "serial_equal": serial_equal, "parallel_equal": parallel_equal,
        "one_partition": day, "one_partition_changed_rows": len(changed),
        "one_partition_rows_encoded": one["rows_encoded"], "one_partition_seconds": round(one_s, 1),
        "one_partition_embed_seconds": one["seconds"], "cpu_count": os.cpu_count(),
        "threads_per_parallel_worker": worker_env(2)["OMP_NUM_THREADS"],
    }
    print()
    print(f"{'run':<34}{'seconds':>10}")
    print(f"{'unpartitioned, one run':<34}{unpartitioned_s:>10.1f}")
    print(f"{'serial backfill, 1 worker':<34}{serial_s:>10.1f}")
    print(f"{'parallel backfill, 2 workers':<34}{parallel_s:>10.1f}")
    print(f"{'one partition, 1% changed':<34}{one_s:>10.1f}")
    print(f"speed-up {result['speedup']}x; equal to unpartitioned: serial {serial_equal}, parallel "
          f"{parallel_equal}; one partition: {len(changed)} rows changed, {one['rows_encoded']} encoded")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
