"""Jammi's pipeline against calling the model yourself, and how its memory grows with the table.

1. Throughput, side by side in one process, model loaded once beforehand for both: the same
   texts embedded by a plain `SentenceTransformer.encode(texts, normalize_embeddings=True)`
   (its defaults: batch size 32, its own length sort) and by Jammi's pipeline, which here means
   the embeddings step and the index step from the validated frame on disk to a searchable table
   (read, compose, hash, each distinct text once, sort by tokens, calibrate the batch size,
   encode, write Parquet from a second thread, integrity/parity/drift checks, HNSW sidecar and its
   recall check). ratio = direct seconds / pipeline seconds, best of --repeats runs each taken in
   turn: above 1 means the pipeline is faster. Two corpora: short texts (the demo's product
   title + description) and long texts (the product descriptions of ../shared/data/amazon-google,
   hundreds of tokens).
2. Memory: peak RSS of the same pipeline over 10x the rows / over 1x, each in a fresh process
   (short texts: product titles).

Prints a table and writes bench/results/embed_overhead.json.

    flock /tmp/jammi-bench.lock python bench/embed_overhead.py [--short-rows 3000] \
        [--long-rows 1500] [--repeats 3] [--rss-rows 2000] [--device cpu|cuda] \
        [--data-dir ../shared/data/amazon-google] [--results bench/results/embed_overhead.json]
"""

from __future__ import annotations

import argparse
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

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from jammi.app.embeddings import embed_pipeline, index_pipeline  # noqa: E402
from jammi.demo.generate import make_products  # noqa: E402
from jammi.embedding.model import load_encoder  # noqa: E402
from jammi.embedding.query import prepare_query_export  # noqa: E402
from jammi.shared import frame_path  # noqa: E402
from jammi.spec.project import DEFAULT_MODEL, load_project  # noqa: E402
from jammi.storage import write_parquet_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "amazon-google"
RESULTS = Path(__file__).resolve().parent / "results" / "embed_overhead.json"


def short_texts(rows: int, columns=("title", "description")) -> list[str]:
    return [" ".join(p[c] for c in columns) for p in make_products(rows, dirty=False)]


def long_texts(rows: int, data: Path = DATA) -> list[str]:
    """Product descriptions of Amazon-Google (both sides), the longest first up to `rows`."""
    found = []
    for name, column in (("Amazon.csv", "description"), ("GoogleProducts.csv", "description")):
        if not (data / name).exists():
            raise SystemExit(f"{data / name} is missing: the long corpus is ../shared/data/amazon-google "
                             "(give another copy with --data-dir)")
        frame = pd.read_csv(data / name, encoding="cp1252", dtype=str)
        found += [t.strip() for t in frame[column].dropna() if len(t.strip()) > 200]
    found = sorted(dict.fromkeys(found), key=len, reverse=True)
    if len(found) < rows:
        raise SystemExit(f"only {len(found)} long descriptions in {data}; ask for --long-rows {len(found)}")
    return found[:rows]


def write_project(root: Path, texts: list[str], artifacts: str = "artifacts"):
    """A one-pipeline project whose validated frame (id, text) is written directly."""
    doc = {"artifact_dir": artifacts,
           "sources": {"docs": {"kind": "csv", "path": "data/docs.csv", "key": "id",
                                "columns": {"id": "str", "text": "str"}}},
           "pipelines": {"docs": {"source": "docs", "text_columns": ["text"], "model": DEFAULT_MODEL}}}
    (root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    project = load_project(root / "jammi.yaml")
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(len(texts))], "text": texts})
    write_parquet_atomic(frame, frame_path(project.artifact_dir, project.frame_asset("docs")))
    return project


def pipeline_seconds(project, encoder, sizes: list | None = None) -> float:
    t0 = time.perf_counter()
    run = embed_pipeline(project, "docs", encoder, full=True)
    index_pipeline(project, "docs")
    seconds = time.perf_counter() - t0
    if sizes is not None:
        sizes.append(run.stats.batch_size_start)
    assert run.stats.rows_embedded == len(pd.read_parquet(
        frame_path(project.artifact_dir, project.frame_asset("docs")))), run.stats
    return seconds


def compare(name: str, texts: list[str], encoder, repeats: int) -> dict:
    direct, pipeline, sizes = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        project = write_project(Path(tmp), texts)
        prepare_query_export(DEFAULT_MODEL, "torch", project.artifact_dir)  # once per artifact dir
        for _ in range(repeats):
            t0 = time.perf_counter()
            encoder.model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
            direct.append(time.perf_counter() - t0)
            pipeline.append(pipeline_seconds(project, encoder, sizes))
    return {"corpus": name, "texts": len(texts), "mean_chars": round(sum(map(len, texts)) / len(texts)),
            "direct_seconds": [round(s, 2) for s in direct],
            "pipeline_seconds": [round(s, 2) for s in pipeline],
            "pipeline_batch_sizes": sizes,
            "ratio": round(min(direct) / min(pipeline), 3)}


def rss_child(rows: int, device: str, artifacts: str) -> None:
    """In a fresh process: run the pipeline over `rows` short texts, print peak RSS as JSON. The
    query export is already in `artifacts` (made by the parent: exporting is a once-per-directory
    cost, and its peak would hide the pipeline's)."""
    with tempfile.TemporaryDirectory() as tmp:
        project = write_project(Path(tmp), short_texts(rows, ("title",)), artifacts)
        encoder = load_encoder(DEFAULT_MODEL, device)
        encoder.encode(["warm up"])
        loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        seconds = pipeline_seconds(project, encoder)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(json.dumps({"rows": rows, "peak_rss_mb": peak, "rss_before_pipeline_mb": loaded,
                      "seconds": seconds}))


def run_rss(rows: int, device: str) -> dict:
    with tempfile.TemporaryDirectory() as artifacts:
        prepare_query_export(DEFAULT_MODEL, "torch", artifacts)
        out = subprocess.run([sys.executable, __file__, "--rss-child", str(rows), "--device", device,
                              "--rss-dir", artifacts], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def software(device: str) -> dict:
    """The versions that produced the figures, and the GPU's name on CUDA."""
    import sentence_transformers
    import torch
    import transformers

    found = {"torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__,
             "transformers": transformers.__version__}
    if device.startswith("cuda"):
        found["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return found


def check_device(device: str) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available to torch on this machine "
                             f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                             "run it on a GPU machine, or use --device cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short-rows", type=int, default=3000)
    parser.add_argument("--long-rows", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (best is kept)")
    parser.add_argument("--rss-rows", type=int, default=2000, help="rows at 1x for the RSS figure")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--data-dir", type=Path, default=DATA,
                        help="folder holding Amazon.csv and GoogleProducts.csv (the long corpus)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rss-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    check_device(args.device)
    if args.rss_child:
        rss_child(args.rss_child, args.device, args.rss_dir)
        return

    encoder = load_encoder(DEFAULT_MODEL, args.device)
    encoder.model.encode(["warm up"] * 8)
    short = compare("short (demo products: title + description)", short_texts(args.short_rows), encoder,
                    args.repeats)
    long = compare("long (amazon-google descriptions)", long_texts(args.long_rows, args.data_dir), encoder,
                   args.repeats)
    result = {
        "model": DEFAULT_MODEL, "device": encoder.device,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
        "software": software(encoder.device),
        "definition": "ratio = direct SentenceTransformer.encode seconds / pipeline seconds (best of "
                      "repeats; > 1: the pipeline is faster); pipeline = embeddings step + index step from "
                      "the validated frame; rss_ratio = peak RSS at 10x rows / at 1x, fresh process each",
        "short": short, "long": long,
        "ratio_short": short["ratio"], "ratio_long": long["ratio"],
    }
    if not args.skip_rss:
        small, large = run_rss(args.rss_rows, args.device), run_rss(args.rss_rows * 10, args.device)
        result.update(rss_rows=[small["rows"], large["rows"]],
                      rss_peak_mb=[round(small["peak_rss_mb"], 1), round(large["peak_rss_mb"], 1)],
                      rss_ratio=round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
                      rss_before_pipeline_mb=[round(small["rss_before_pipeline_mb"], 1),
                                              round(large["rss_before_pipeline_mb"], 1)],
                      rss_pipeline_seconds=[round(small["seconds"], 1), round(large["seconds"], 1)])

    print(f"{'figure':<34}{'direct s':>10}{'pipeline s':>12}{'ratio':>8}  target")
    for key, c, target in (("ratio_short", short, ">= 1.05"), ("ratio_long", long, ">= 1.0")):
        print(f"{key + ' (' + str(c['texts']) + ' texts)':<34}{min(c['direct_seconds']):>10}"
              f"{min(c['pipeline_seconds']):>12}{c['ratio']:>8}  {target}")
    if "rss_ratio" in result:
        label = f"rss_ratio {result['rss_rows']} rows"
        print(f"{label:<34}{str(result['rss_peak_mb']) + ' MB':>22}{result['rss_ratio']:>8}  <= 1.1")
    print("ratio = direct SentenceTransformer.encode time / pipeline time: above 1, the pipeline is faster")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.results}")


if __name__ == "__main__":
    main()
