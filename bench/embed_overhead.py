"""What the pipeline costs on top of the model, and how its memory grows with the table.

1. Throughput, one process: the same N texts embedded by calling
   SentenceTransformer.encode directly, and through the full materialization
   (extract -> validate -> embed -> write Parquet -> build index). Best of --repeats runs
   of each, alternating, with the model loaded once beforehand for both.
2. Memory: peak RSS of a materialization of 10x the rows over peak RSS at 1x, each in its
   own process (short texts: product titles).

Prints a table and writes bench/results/embed_overhead.json.

    python bench/embed_overhead.py [--rows 5000] [--repeats 2] [--rss-rows 5000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import dagster as dg  # noqa: E402
import yaml  # noqa: E402

from jammi.demo.generate import make_products  # noqa: E402
from jammi.embedding.model import load_encoder  # noqa: E402
from jammi.spec.project import DEFAULT_MODEL, load_project  # noqa: E402
from jammi_assets.definitions import build_assets, build_resources  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "embed_overhead.json"


def write_project(root: Path, rows: int, text_columns: list[str]) -> tuple[Path, list[str]]:
    """A clean product corpus of `rows` rows and a one-pipeline project over it."""
    products = make_products(rows, dirty=False)
    (root / "data").mkdir(parents=True, exist_ok=True)
    with open(root / "data" / "products.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(products[0]))
        writer.writeheader()
        writer.writerows(products)
    doc = {
        "artifact_dir": "artifacts",
        "sources": {"products": {
            "kind": "csv", "path": "data/products.csv", "key": "product_id",
            "columns": {"product_id": "int", "title": "str", "description": "str",
                        "category": "str", "brand": "str", "price": {"type": "float", "ge": 0},
                        "updated_at": "datetime"},
        }},
        "pipelines": {"products": {"source": "products", "text_columns": text_columns,
                                   "model": DEFAULT_MODEL}},
    }
    (root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    texts = [" ".join(p[c] for c in text_columns) for p in products]
    return root / "jammi.yaml", texts


def materialize(project_file: Path) -> float:
    project = load_project(project_file)
    t0 = time.perf_counter()
    result = dg.materialize(build_assets(project), resources=build_resources(project),
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=True)
    seconds = time.perf_counter() - t0
    assert result.success
    return seconds


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def rss_child(rows: int) -> None:
    """Run in a fresh process: materialize `rows` short texts, print peak RSS as JSON."""
    import psutil

    with tempfile.TemporaryDirectory() as tmp:
        project_file, _ = write_project(Path(tmp), rows, ["title"])
        load_encoder(DEFAULT_MODEL, "cpu").encode(["warm up"])
        loaded_mb = psutil.Process().memory_info().rss / 2**20
        seconds = materialize(project_file)
    print(json.dumps({"rows": rows, "peak_rss_mb": peak_rss_mb(), "rss_after_model_load_mb": loaded_mb,
                      "seconds": seconds}))


def run_rss(rows: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(rows)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="texts for the throughput figure")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side (best is kept)")
    parser.add_argument("--rss-rows", type=int, default=5000, help="rows at 1x for the RSS figure")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return

    encoder = load_encoder(DEFAULT_MODEL, "cpu")
    model = encoder.model
    direct_s, pipeline_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        project_file, texts = write_project(Path(tmp), args.rows, ["title", "description"])
        model.encode(texts[:64], batch_size=32, normalize_embeddings=True)  # warm-up
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
            direct_s.append(time.perf_counter() - t0)
            pipeline_s.append(materialize(project_file))
    direct_rps = args.rows / min(direct_s)
    pipeline_rps = args.rows / min(pipeline_s)
    result = {
        "rows": args.rows,
        "model": DEFAULT_MODEL,
        "device": encoder.device,
        "direct_seconds": [round(s, 2) for s in direct_s],
        "pipeline_seconds": [round(s, 2) for s in pipeline_s],
        "direct_rows_per_s": round(direct_rps, 1),
        "pipeline_rows_per_s": round(pipeline_rps, 1),
        "ratio": round(pipeline_rps / direct_rps, 3),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
    }
    if not args.skip_rss:
        small, large = run_rss(args.rss_rows), run_rss(args.rss_rows * 10)
        result.update(
            rss_rows=[small["rows"], large["rows"]],
            rss_peak_mb=[round(small["peak_rss_mb"], 1), round(large["peak_rss_mb"], 1)],
            rss_ratio=round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
            rss_after_model_load_mb=[round(small["rss_after_model_load_mb"], 1),
                                     round(large["rss_after_model_load_mb"], 1)],
            rss_materialize_seconds=[round(small["seconds"], 1), round(large["seconds"], 1)],
        )

    print(f"{'figure':<28}{'value':>14}  target")
    print(f"{'rows':<28}{result['rows']:>14}")
    print(f"{'direct rows/s':<28}{result['direct_rows_per_s']:>14}")
    print(f"{'pipeline rows/s':<28}{result['pipeline_rows_per_s']:>14}")
    print(f"{'ratio (pipeline/direct)':<28}{result['ratio']:>14}  >= 0.90")
    if "rss_ratio" in result:
        print(f"{'RSS after model load (MB)':<28}{str(result['rss_after_model_load_mb']):>14}")
        print(f"{'peak RSS 1x / 10x (MB)':<28}{str(result['rss_peak_mb']):>14}")
        print(f"{'rss_ratio (10x / 1x)':<28}{result['rss_ratio']:>14}  <= 1.3")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
