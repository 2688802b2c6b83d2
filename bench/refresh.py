"""Incremental refresh against a full build, in one process, with the real model.

On N demo-style products (`--rows`, default 20,000): a full build of the embedding table; a
refresh with nothing new; a refresh after 1% of rows changed, 0.5% deleted and 0.5% added; a
compaction. Each step is the engine call the `<pipeline>_embeddings` asset makes
(jammi.app.embeddings.embed_pipeline), timed on its own; the frames it reads are prepared
the way the bronze and silver assets prepare them, untimed.

Then the crash loop, run until `--kills` (default 30) refreshes were killed mid-run: on a
smaller table (`--kill-rows`), each trial changes the source at random, starts a refresh in a
child process and SIGKILLs it at a random point of the refresh (model load, encoding, segment,
index, commit: a uniform delay over the duration of the first trial's refresh, which runs
whole); the serving version must then be whole (one of the two sources, no key twice), the next
refresh must finish the work, and the result must equal a full recomputation (same keys and
hashes, vectors within 1e-5 cosine of the model's own output) with no deleted key searchable.
Prints a table and writes bench/results/refresh.json.

    python bench/refresh.py [--rows 20000] [--kills 30] [--kill-rows 2000] [--only-kills]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from jammi import keys  # noqa: E402
from jammi.app.embeddings import embed_pipeline  # noqa: E402
from jammi.app.sources import store_raw, validate_source  # noqa: E402
from jammi.app.verify import verify  # noqa: E402
from jammi.demo.generate import make_products  # noqa: E402
from jammi.embedding.model import LazyEncoder, load_encoder  # noqa: E402
from jammi.embedding.texts import compose_texts, content_hash  # noqa: E402
from jammi.spec.project import DEFAULT_MODEL, Project, load_project  # noqa: E402
from jammi.tables.catalog import Catalog  # noqa: E402
from jammi.tables.contract import manifest_index_spec  # noqa: E402
from jammi.tables.index import VersionIndex  # noqa: E402
from jammi.tables.refresh import compact_table  # noqa: E402
from jammi.tables.versions import read_current  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "refresh.json"
FIELDS = ["product_id", "title", "description", "category", "brand", "price", "updated_at"]
TEXT = ["title", "description"]
KILL_CHILD = """
import sys
from jammi.app.embeddings import embed_pipeline
from jammi.embedding.model import LazyEncoder
from jammi.spec.project import load_project
project = load_project(sys.argv[1])
print("refreshing", flush=True)
embed_pipeline(project, "products", LazyEncoder(sys.argv[2], "cpu"))
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
                    "category": "str", "brand": "str", "price": "float", "updated_at": "datetime"},
        "quality": {"schema_conformance": {"max_rate": 0.5}}}},
        "pipelines": {"products": {"source": "products", "text_columns": TEXT}}}
    (root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_project(root / "jammi.yaml")


def prepare_frames(project: Project) -> None:
    """What the raw_ and validate_ assets write, without Dagster around them."""
    store_raw(project, "products")
    validate_source(project, "products")


def mutate(rows: list[dict], rng: random.Random, changed: float, deleted: float, added: float,
           next_id: int) -> tuple[list[dict], dict]:
    n = len(rows)
    picks = rng.sample(range(n), int(n * (changed + deleted)))
    to_change, to_delete = set(picks[: int(n * changed)]), set(picks[int(n * changed):])
    out = []
    for i, row in enumerate(rows):
        if i in to_delete:
            continue
        if i in to_change:
            row = {**row, "title": f"{row['title']} (revised {next_id + i})"}
        out.append(row)
    fresh = make_products(int(n * added), seed=next_id, dirty=False)
    for j, row in enumerate(fresh):
        row["product_id"] = next_id + j
    return out + fresh, {"changed": len(to_change), "deleted": len(to_delete), "added": len(fresh)}


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def throughput_figures(rows_n: int, work: Path) -> dict:
    rng = random.Random(1)
    rows = make_products(rows_n, seed=3)
    project = make_project(work / "throughput", rows)
    prepare_frames(project)
    full, full_s = timed(embed_pipeline, project, "products", LazyEncoder(DEFAULT_MODEL, "cpu"), full=True)
    print(f"  full build: {full.stats.rows_embedded} rows in {full_s:.1f}s")
    no_change_encoder = LazyEncoder(DEFAULT_MODEL, "cpu")
    same, same_s = timed(embed_pipeline, project, "products", no_change_encoder)
    assert same.stats.counts.outcome == "no_change", same.stats.counts
    rows, planted = mutate(rows, rng, 0.01, 0.005, 0.005, 10_000_000)
    write_csv(project.root / "products.csv", rows)
    prepare_frames(project)
    one, one_s = timed(embed_pipeline, project, "products", LazyEncoder(DEFAULT_MODEL, "cpu"))
    c = one.stats.counts
    print(f"  1% refresh: {c.as_dict()} in {one_s:.2f}s (planted {planted})")
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="products")
    _, compact_s = timed(compact_table, catalog, rec, "products")
    return {
        "rows": rows_n,
        "full_seconds": round(full_s, 2),
        "no_change": {"seconds": round(same_s, 3), "rows_encoded": same.stats.counts.rows_encoded,
                      "model_loaded": no_change_encoder.loaded},
        "one_percent": {"seconds": round(one_s, 2), "rows_encoded": c.rows_encoded, "added": c.added,
                        "changed": c.changed, "deleted": c.deleted, "unchanged": c.unchanged,
                        "planted": planted},
        "ratio_no_change_to_full": round(same_s / full_s, 4),
        "ratio_one_percent_to_full": round(one_s / full_s, 4),
        "compact_seconds": round(compact_s, 2),
        "parity_after": verify(project)[0].row(),
    }


def served(project: Project) -> tuple[list[str], list[str]]:
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="products")
    table = read_current(rec.tables_dir, catalog.current_version(rec), ["_content_hash"])
    return table["_row_id"].to_pylist(), table["_content_hash"].to_pylist()


def expected_rows(project: Project) -> dict[str, str]:
    """key -> text of the validated rows with text: what a full recomputation embeds."""
    import pandas as pd

    from jammi.shared import frame_path

    frame = pd.read_parquet(frame_path(project.artifact_dir, keys.validated("products")))
    texts = compose_texts(frame, TEXT)
    return {str(k): t for k, t in zip(frame["product_id"], texts, strict=True) if t is not None}


def trial_violations(project: Project, before: dict[str, str], after: dict[str, str],
                     vectors: dict[str, np.ndarray], encoder) -> list[str]:
    problems = []
    ids, _ = served(project)
    if len(ids) != len(set(ids)):
        problems.append("a key appears twice after the kill")
    if set(ids) not in (set(before), set(after)):
        problems.append("the serving version after the kill is neither the old nor the new source")
    done = embed_pipeline(project, "products", LazyEncoder(DEFAULT_MODEL, "cpu"))
    if done.stats.blocked_by:
        problems.append(f"the finishing refresh was blocked: {done.stats.blocked_by}")
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="products")
    version = catalog.current_version(rec)
    table = read_current(rec.tables_dir, version, ["_content_hash", "vector"])
    ids = table["_row_id"].to_pylist()
    if len(ids) != len(set(ids)) or set(ids) != set(after):
        problems.append("after the next run the keys differ from the source")
    hashes = dict(zip(ids, table["_content_hash"].to_pylist(), strict=True))
    if any(hashes.get(k) != content_hash(DEFAULT_MODEL, t) for k, t in after.items()):
        problems.append("a content hash differs from a full recomputation")
    todo = sorted({t for t in after.values() if t not in vectors})
    if todo:
        vectors.update(zip(todo, encoder.encode(todo), strict=True))
    got = np.stack(table["vector"].to_numpy(zero_copy_only=False)).astype(np.float32)
    want = np.stack([vectors[after[k]] for k in ids])
    worst = float(1.0 - (got * want).sum(axis=1).min()) if len(ids) else 0.0
    if worst > 1e-5:
        problems.append(f"a vector is {worst:.2e} cosine away from a full recomputation")
    index = VersionIndex(rec.tables_dir, version, rec.dimensions, manifest_index_spec(rec.base_path))
    for key in list(set(before) - set(after))[:5]:
        hits = {r for r, _ in index.search(encoder.encode([before[key]])[0], 10)}
        if key in hits:
            problems.append(f"deleted key {key} is still searchable")
    return problems


def kill_figures(kills: int, rows_n: int, work: Path) -> dict:
    rng = random.Random(5)
    rows = make_products(rows_n, seed=9, dirty=False)
    project = make_project(work / "kills", rows)
    prepare_frames(project)
    embed_pipeline(project, "products", LazyEncoder(DEFAULT_MODEL, "cpu"), full=True)
    encoder = load_encoder(DEFAULT_MODEL, "cpu")
    vectors: dict[str, np.ndarray] = {}
    violations, details, next_id = 0, [], 20_000_000
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    window = None  # how long a child's refresh takes, measured on the first trial
    trial = 0
    while sum(d["state"].startswith("killed") for d in details) < kills and trial < 3 * kills:
        before = expected_rows(project)
        rows, _ = mutate(rows, rng, rng.uniform(0.005, 0.05), rng.uniform(0, 0.01), rng.uniform(0, 0.01),
                         next_id)
        next_id += 100_000
        write_csv(project.root / "products.csv", rows)
        prepare_frames(project)
        after = expected_rows(project)
        # a uniform point of the child's refresh (model load, encoding, segment, index, commit)
        delay = 3600.0 if window is None else rng.uniform(0.0, window)
        child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(project.path), DEFAULT_MODEL],
                                 env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True)
        child.stdout.readline()  # imports done: the refresh begins now
        began = time.perf_counter()
        try:
            child.wait(timeout=delay)
            state = "finished before the kill" if window else "not killed (measures the window)"
            window = window or (time.perf_counter() - began) * 1.1
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
            state = f"killed {delay:.2f}s into it"
        problems = trial_violations(project, before, after, vectors, encoder)
        violations += len(problems)
        details.append({"trial": trial, "state": state, "problems": problems})
        print(f"  trial {trial + 1:>2}: {state:<34} {'; '.join(problems) or 'ok'}")
        trial += 1
    killed = sum(d["state"].startswith("killed") for d in details)  # the rest finished first
    return {"kill_trials": killed, "trials_run": len(details), "kill_violations": violations,
            "kill_rows": rows_n, "kill_window_seconds": round(window or 0.0, 2), "kill_details": details}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=30, help="Trials that end in a kill (at least).")
    parser.add_argument("--kill-rows", type=int, default=2_000)
    parser.add_argument("--only-kills", action="store_true",
                        help="Keep the refresh figures of the last run; redo the crash loop.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jammi-refresh-") as tmp:
        work = Path(tmp)
        if args.only_kills:
            figures = {k: v for k, v in json.loads(RESULTS.read_text(encoding="utf-8")).items()
                       if not k.startswith(("kill", "trials"))}
        else:
            print(f"refresh figures on {args.rows:,} rows")
            figures = throughput_figures(args.rows, work)
        print(f"crash loop: until {args.kills} refreshes are killed, on {args.kill_rows:,} rows")
        figures.update(kill_figures(args.kills, args.kill_rows, work))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    nc, one = figures["no_change"], figures["one_percent"]
    print(f"\n{'step':<34}{'seconds':>10}{'rows encoded':>14}{'vs full':>10}")
    print(f"{'full build':<34}{figures['full_seconds']:>10.2f}{figures['rows']:>14,}{1:>10.3f}")
    print(f"{'no change (model loaded: ' + str(nc['model_loaded']).lower() + ')':<34}{nc['seconds']:>10.3f}"
          f"{nc['rows_encoded']:>14,}{figures['ratio_no_change_to_full']:>10.4f}")
    print(f"{'1% changed, 0.5% deleted, 0.5% added':<34}{one['seconds']:>10.2f}{one['rows_encoded']:>14,}"
          f"{figures['ratio_one_percent_to_full']:>10.4f}")
    print(f"{'compaction':<34}{figures['compact_seconds']:>10.2f}")
    print(f"\nkill trials: {figures['kill_trials']} refreshes killed mid-run "
          f"({figures['trials_run']} trials in all), violations: {figures['kill_violations']}")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
