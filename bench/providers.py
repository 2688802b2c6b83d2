"""An embedding provider (an OpenAI-compatible service) against the in-process model, in one
session, with a real server on 127.0.0.1: Infinity serving the packaged all-MiniLM-L6-v2
(tests/provider_support.py; its own virtualenv, made on first use).

1. Throughput: a full build of `--throughput-rows` demo products through the provider and through
   the in-process model (jammi.app.embeddings.embed_pipeline, the call the asset makes), taking
   turns `--repeats` times, best of each; and the provider table's vectors against the
   in-process table's, row by row (cosine).
2. Refresh: a full build of `--rows` products through the provider, then a refresh after 1% of
   the rows changed: the tokens it sent against the full build's, and the tokens it avoided.
3. A 429 storm: `--storm-texts` short texts through a proxy, at a declared `--storm-rpm`, first
   without faults (the baseline), then with a share of the requests (`--storm-share`) answered
   429 with Retry-After 1 s: the completion time against the baseline's and against the time the
   declared RPM alone allows, and rows lost (texts without a vector).

Prints a table and writes bench/results/providers.json.

    python bench/providers.py [--rows 20000] [--throughput-rows 2000] [--repeats 2]
                              [--storm-texts 640] [--storm-rpm 20] [--storm-share 0.3]
                              [--only throughput refresh storm]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
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

from jammi.app.embeddings import embed_pipeline  # noqa: E402
from jammi.app.sources import store_raw, validate_source  # noqa: E402
from jammi.demo.generate import make_products  # noqa: E402
from jammi.embedding.model import LazyEncoder, load_encoder  # noqa: E402
from jammi.embedding.providers import load_provider  # noqa: E402
from jammi.spec.project import DEFAULT_MODEL, Project, load_project  # noqa: E402
from jammi.spec.provider import ProviderSpec  # noqa: E402
from jammi.tables.catalog import Catalog  # noqa: E402
from jammi.tables.versions import read_current  # noqa: E402
from tests.provider_support import API_KEY, SERVED_MODEL, FaultProxy, start_infinity  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "providers.json"
PARTS = ("throughput", "refresh", "storm")
FIELDS = ["product_id", "title", "description", "category", "brand", "price", "updated_at"]
TEXT = ["title", "description"]
KEY_ENV = "JAMMI_BENCH_KEY"
# a CPU server answers a 64-text request in seconds; four in flight keep it busy without a request
# waiting in its queue past the timeout (a timed-out request is sent again: work done twice)
PROVIDER = {"kind": "openai", "model": SERVED_MODEL, "api_key": f"${{{KEY_ENV}}}", "max_batch_texts": 64,
            "max_batch_tokens": 16384, "max_concurrency": 4, "timeout_s": 120,
            "price_per_million_tokens": 0.02}


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def make_project(root: Path, rows: list[dict], provider: dict | None) -> Project:
    """The demo products as a CSV source and one pipeline over it, embedded by `provider` (or the
    in-process model), with the bronze and silver frames written as their assets write them."""
    root.mkdir(parents=True, exist_ok=True)
    write_csv(root / "products.csv", rows)
    pipe = {"source": "products", "text_columns": TEXT, **({"provider": provider} if provider else {})}
    doc = {"artifact_dir": "artifacts", "sources": {"products": {
        "kind": "csv", "path": "products.csv", "key": "product_id",
        "columns": {"product_id": {"type": "int", "nullable": False}, "title": "str", "description": "str",
                    "category": "str", "brand": "str", "price": "float", "updated_at": "datetime"},
        "quality": {"schema_conformance": {"max_rate": 0.5}}}},
        "pipelines": {"products": pipe}}
    (root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    project = load_project(root / "jammi.yaml")
    prepare_frames(project)
    return project


def prepare_frames(project: Project) -> None:
    store_raw(project, "products")
    validate_source(project, "products")


def encoder_of(project: Project):
    pipe = project.pipelines["products"]
    if pipe.provider is None:
        return LazyEncoder(DEFAULT_MODEL, "cpu")
    return load_provider(pipe.provider, project.secrets)


def build(project: Project):
    t0 = time.perf_counter()
    run = embed_pipeline(project, "products", encoder_of(project), full=True)
    return run, time.perf_counter() - t0


def table_vectors(project: Project) -> dict[str, np.ndarray]:
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="products")
    table = read_current(rec.tables_dir, catalog.current_version(rec), ["vector"])
    vectors = np.stack(table["vector"].to_numpy(zero_copy_only=False)).astype(np.float32)
    return dict(zip(table["_row_id"].to_pylist(), vectors, strict=True))


def throughput_figures(base_url: str, rows_n: int, repeats: int, work: Path) -> dict:
    rows = make_products(rows_n, seed=3, dirty=False)
    local = make_project(work / "in_process", rows, None)
    remote = make_project(work / "provider", rows, {**PROVIDER, "base_url": base_url})
    load_encoder(DEFAULT_MODEL, "cpu").encode(["warm up"])  # loading is not throughput: both start warm
    encoder_of(remote).encode(["warm up"])
    local_s, remote_s, usage = [], [], None
    for turn in range(repeats):
        _, s = build(local)
        local_s.append(s)
        run, r = build(remote)
        remote_s.append(r)
        usage = run.stats.counts.usage
        print(f"  turn {turn + 1}: in process {s:.1f}s, provider {r:.1f}s ({rows_n / s:.0f} vs "
              f"{rows_n / r:.0f} rows/s)")
    a, b = table_vectors(local), table_vectors(remote)
    cos = np.array([float(a[k] @ b[k]) for k in a])
    best_local, best_remote = min(local_s), min(remote_s)
    return {"rows": rows_n, "repeats": repeats,
            "in_process_seconds": [round(s, 2) for s in local_s],
            "provider_seconds": [round(s, 2) for s in remote_s],
            "in_process_rows_per_s": round(rows_n / best_local, 1),
            "provider_rows_per_s": round(rows_n / best_remote, 1),
            "provider_to_in_process": round(best_local / best_remote, 3),
            "rows_compared": len(cos), "cosine_min": round(float(cos.min()), 6),
            "cosine_mean": round(float(cos.mean()), 6), "provider_usage": usage}


def refresh_figures(base_url: str, rows_n: int, work: Path) -> dict:
    rng = random.Random(1)
    rows = make_products(rows_n, seed=5, dirty=False)
    project = make_project(work / "refresh", rows, {**PROVIDER, "base_url": base_url})
    full, full_s = build(project)
    full_usage = full.stats.counts.usage
    print(f"  full build: {full.stats.rows_embedded:,} rows in {full_s:.1f}s, "
          f"{full_usage['tokens_sent']:,} tokens in {full_usage['requests']} requests")
    changed = rng.sample(range(len(rows)), len(rows) // 100)
    for i in changed:
        rows[i] = {**rows[i], "title": f"{rows[i]['title']} (revised {i})"}
    write_csv(project.root / "products.csv", rows)
    prepare_frames(project)
    t0 = time.perf_counter()
    one = embed_pipeline(project, "products", encoder_of(project))
    one_s = time.perf_counter() - t0
    usage = one.stats.counts.usage
    print(f"  1% refresh: {one.stats.counts.rows_encoded} rows encoded in {one_s:.1f}s, "
          f"{usage['tokens_sent']:,} tokens sent, {usage['tokens_avoided']:,} avoided")
    return {"rows": rows_n, "changed_rows": len(changed), "full_seconds": round(full_s, 2),
            "full_tokens_sent": full_usage["tokens_sent"], "full_requests": full_usage["requests"],
            "full_estimated_cost": full_usage["estimated_cost"],
            "refresh_seconds": round(one_s, 2), "refresh_rows_encoded": one.stats.counts.rows_encoded,
            "refresh_requests": usage["requests"], "refresh_tokens_sent": usage["tokens_sent"],
            "refresh_tokens_avoided": usage["tokens_avoided"],
            "refresh_estimated_cost": usage["estimated_cost"], "refresh_cost_avoided": usage["cost_avoided"],
            "refresh_to_full_tokens": round(usage["tokens_sent"] / full_usage["tokens_sent"], 4)}


def storm_figures(base_url: str, texts_n: int, rpm: int, share: float, batch: int = 16) -> dict:
    """The same texts sent twice at the declared RPM, through the proxy: without faults (the
    baseline), then with `share` of the requests answered 429 (Retry-After 1 s). Short texts
    (product titles), so the pacing, not the server's model, sets the pace."""
    texts = [r["title"] for r in make_products(texts_n, seed=11, dirty=False)]
    runs = {}
    for name, fault_share in (("baseline", 0.0), ("storm", share)):
        rng = random.Random(7)
        proxy = FaultProxy(base_url, plan=lambda n, _body, rng=rng, p=fault_share:
                           ("status", 429, 1) if rng.random() < p else None)
        try:
            spec = ProviderSpec(base_url=proxy.base_url, api_key=API_KEY, model=SERVED_MODEL,
                                max_batch_texts=batch, max_concurrency=4, requests_per_minute=rpm)
            provider = load_provider(spec)
            t0 = time.perf_counter()
            vectors, errors, _ = provider.encode_many(texts)
            seconds = time.perf_counter() - t0
        finally:
            proxy.stop()
        usage = provider.usage.snapshot()
        lost = sum(1 for i, e in enumerate(errors) if e is not None or not np.any(vectors[i]))
        runs[name] = {"seconds": round(seconds, 2), "requests": usage.requests,
                      "answered_429": usage.rate_limited, "retries": usage.retries,
                      "rate_limit_waits": usage.rate_limit_waits,
                      "rate_limit_wait_s": usage.rate_limit_wait_s,
                      "rows_lost": lost}
        print(f"  {name}: {texts_n} texts, {usage.requests} requests ({usage.rate_limited} answered 429) "
              f"in {seconds:.1f}s; rows lost: {lost}")
    check = load_encoder(DEFAULT_MODEL, "cpu").encode(texts[:256])
    cos = float((vectors[:256] * check).sum(axis=1).min())
    storm, base = runs["storm"], runs["baseline"]
    floor = (base["requests"] - 1) * 60.0 / rpm  # the run's requests at the declared RPM
    print(f"  the declared {rpm}/min allows {base['requests']} requests in {floor:.1f}s")
    return {"texts": texts_n, "texts_per_request": batch, "declared_rpm": rpm, "share_answered_429": share,
            **{f"{name}_{k}": v for name, run in runs.items() for k, v in run.items()},
            "rpm_floor_seconds": round(floor, 2),
            "baseline_to_rpm_floor": round(base["seconds"] / floor, 3),
            "storm_to_baseline": round(storm["seconds"] / base["seconds"], 3),
            "storm_to_rpm_floor": round(storm["seconds"] / floor, 3),
            # every request the storm run sent, the ones answered 429 included, at the declared RPM
            "rpm_floor_all_sent_seconds": round((storm["requests"] - 1) * 60.0 / rpm, 2),
            "retry_after_total_s": float(storm["answered_429"]),  # each 429 asked for 1 s
            "achieved_rpm_in_storm": round(storm["requests"] / storm["seconds"] * 60, 1),
            "rows_lost": storm["rows_lost"] + base["rows_lost"], "cosine_min_first_256": round(cos, 6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="Rows of the refresh figures.")
    parser.add_argument("--throughput-rows", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--storm-texts", type=int, default=640)
    parser.add_argument("--storm-rpm", type=int, default=20)
    parser.add_argument("--storm-share", type=float, default=0.3)
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS),
                        help="Measure these parts; keep the others' figures from the last run.")
    args = parser.parse_args()
    os.environ[KEY_ENV] = API_KEY
    figures = json.loads(RESULTS.read_text(encoding="utf-8")) if set(args.only) != set(PARTS) else {}
    with tempfile.TemporaryDirectory(prefix="jammi-providers-") as tmp:
        work = Path(tmp)
        server = start_infinity(work)
        try:
            if "throughput" in args.only:
                print(f"throughput on {args.throughput_rows:,} rows, {args.repeats} turns each")
                figures["throughput"] = throughput_figures(server.base_url, args.throughput_rows,
                                                           args.repeats, work)
            if "refresh" in args.only:
                print(f"1% refresh on {args.rows:,} rows")
                figures["refresh"] = refresh_figures(server.base_url, args.rows, work)
            if "storm" in args.only:
                print(f"429 storm: {args.storm_share:.0%} of requests answered 429, at {args.storm_rpm}/min")
                figures["storm"] = storm_figures(server.base_url, args.storm_texts, args.storm_rpm,
                                                 args.storm_share)
        finally:
            server.stop()
    figures["machine"] = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "python": platform.python_version(), "server": "infinity-emb (torch, cpu, float32)",
                          "load_average_at_end": [round(x, 1) for x in os.getloadavg()]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    t, r, s = figures["throughput"], figures["refresh"], figures["storm"]
    print(f"\n{'figure':<44}{'value':>14}  accepted when")
    print(f"{'provider / in-process throughput':<44}{t['provider_to_in_process']:>14.3f}  >= 0.8")
    print(f"{'vectors: min cosine provider vs in process':<44}{t['cosine_min']:>14.6f}  >= 0.999")
    print(f"{'1% refresh tokens / full build tokens':<44}{r['refresh_to_full_tokens']:>14.4f}  <= 0.02")
    print(f"{'1% refresh tokens avoided':<44}{r['refresh_tokens_avoided']:>14,}")
    print(f"{'429 storm: seconds / the same run without it':<44}{s['storm_to_baseline']:>14.3f}")
    print(f"{'429 storm: seconds / declared-RPM floor':<44}{s['storm_to_rpm_floor']:>14.3f}")
    print(f"{'rows lost (storm and baseline)':<44}{s['rows_lost']:>14}  0")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
