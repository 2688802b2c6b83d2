"""What each inference backend costs and loses against torch fp32, on real product data.

Per backend (torch, onnx, onnx-int8, openvino), all in one process, through Jammi's own encoder
(load_encoder; the exports cached in a temporary artifact directory beforehand, not timed):

- speedup: texts/s ÷ torch fp32 texts/s on the same texts (a fixed sample of both corpora's
  titles, length-sorted batches of 32), best of --rounds rounds taken in turn, backend by backend;
- mean_cosine / min_cosine: cosine of each corpus vector to its torch fp32 vector;
- ndcg_loss: nDCG@10 of title -> matching record retrieval (query: a left record's title;
  relevant: its matches in the mapping; corpus: every record of the right table, embedded by
  its title; exact cosine ranking), torch fp32 minus backend, averaged over Amazon-Google and
  Walmart-Amazon. Every left record with a match is a query (no sampling); full corpora.

Prints a table and writes bench/results/backends.json.

    flock /tmp/jammi-bench.lock python bench/backends.py [--rounds 3] [--speed-texts 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jammi.embedding.backends import BACKENDS, TORCH, ensure_export  # noqa: E402
from jammi.embedding.encode import encode_all  # noqa: E402
from jammi.embedding.model import load_encoder  # noqa: E402
from jammi.spec.project import DEFAULT_MODEL  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results" / "backends.json"
K = 10


def amazon_google() -> dict:
    folder = DATA / "amazon-google"
    left = pd.read_csv(folder / "Amazon.csv", encoding="cp1252", dtype=str)
    right = pd.read_csv(folder / "GoogleProducts.csv", encoding="cp1252", dtype=str)
    pairs = pd.read_csv(folder / "Amzon_GoogleProducts_perfectMapping.csv", encoding="cp1252", dtype=str)
    return _dataset("amazon-google", left, "id", "title", right, "id", "name",
                    zip(pairs["idAmazon"], pairs["idGoogleBase"], strict=True))


def walmart_amazon() -> dict:
    folder = DATA / "walmart-amazon"
    left = pd.read_csv(folder / "tableA.csv", dtype=str)
    right = pd.read_csv(folder / "tableB.csv", dtype=str)
    pairs = pd.read_csv(folder / "matches_train_valid_test.csv", dtype=str)
    return _dataset("walmart-amazon", left, "id", "title", right, "id", "title",
                    zip(pairs["ltable_id"], pairs["rtable_id"], strict=True))


def _dataset(name, left, lkey, ltitle, right, rkey, rtitle, pairs) -> dict:
    titles = dict(zip(left[lkey], left[ltitle].fillna("").str.strip(), strict=True))
    corpus_ids = right[rkey].tolist()
    position = {r: i for i, r in enumerate(corpus_ids)}
    relevant: dict[str, set[int]] = {}
    for lid, rid in pairs:
        if lid in titles and titles[lid] and rid in position:
            relevant.setdefault(lid, set()).add(position[rid])
    queries = sorted(relevant)
    corpus = [t if t else "(untitled)" for t in right[rtitle].fillna("").str.strip()]
    return {"name": name, "queries": [titles[q] for q in queries], "relevant": [relevant[q] for q in queries],
            "corpus": corpus}


def ndcg_at_k(query_vecs: np.ndarray, corpus_vecs: np.ndarray, relevant: list[set[int]]) -> float:
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    scores = query_vecs @ corpus_vecs.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
    total = 0.0
    for ranked, rel in zip(order, relevant, strict=True):
        gains = np.array([1.0 if int(i) in rel else 0.0 for i in ranked])
        ideal = discounts[: min(len(rel), K)].sum()
        total += float((gains * discounts).sum() / ideal)
    return total / len(relevant)


def texts_per_second(encoder, texts: list[str]) -> float:
    t0 = time.perf_counter()
    encode_all(encoder, texts, batch_size=32)
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="speed rounds (best is kept)")
    parser.add_argument("--speed-texts", type=int, default=2000, help="texts timed per backend per round")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    if backends[0] != TORCH:
        sys.exit("the first backend must be torch (the reference)")
    sets = [amazon_google(), walmart_amazon()]
    rng = np.random.default_rng(0)
    pool = [t for d in sets for t in d["corpus"]]
    picked = rng.choice(len(pool), size=min(args.speed_texts, len(pool)), replace=False)
    speed_texts = [pool[i] for i in picked]

    with tempfile.TemporaryDirectory() as artifacts:
        encoders = {}
        for b in backends:
            if b != TORCH:
                ensure_export(DEFAULT_MODEL, b, artifacts)
            encoders[b] = load_encoder(DEFAULT_MODEL, "cpu", b, artifacts)
            encoders[b].encode(speed_texts[:64])  # warm-up
        rates: dict[str, list[float]] = {b: [] for b in backends}
        for _ in range(args.rounds):
            for b in backends:
                rates[b].append(texts_per_second(encoders[b], speed_texts))
        vectors = {}
        for b in backends:
            vectors[b] = [(encode_all(encoders[b], d["queries"]), encode_all(encoders[b], d["corpus"]))
                          for d in sets]

    ndcg = {b: [ndcg_at_k(q, c, d["relevant"]) for (q, c), d in zip(vectors[b], sets, strict=True)]
            for b in backends}
    reference = max(rates[TORCH])
    machine = f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}"
    result: dict = {"model": DEFAULT_MODEL, "device": "cpu", "machine": machine,
                    "definition": "speedup = texts/s / torch fp32 texts/s (best of rounds); cosine to torch "
                                  "fp32 corpus vectors; ndcg_loss = torch nDCG@10 - backend nDCG@10, mean of "
                                  "2 sets",
                    "datasets": {d["name"]: {"queries": len(d["queries"]), "corpus": len(d["corpus"]),
                                             "torch_ndcg@10": round(ndcg[TORCH][i], 4)}
                                 for i, d in enumerate(sets)},
                    "speed_texts": len(speed_texts), "rounds": args.rounds}
    for b in backends:
        cos = np.concatenate([(vectors[b][i][1] * vectors[TORCH][i][1]).sum(axis=1)
                              for i in range(len(sets))])
        result[b] = {"speedup": round(max(rates[b]) / reference, 3),
                     "texts_per_s": round(max(rates[b]), 1),
                     "mean_cosine": round(float(cos.mean()), 6), "min_cosine": round(float(cos.min()), 6),
                     "ndcg@10": [round(x, 4) for x in ndcg[b]],
                     "ndcg_loss": round(float(np.mean(np.array(ndcg[TORCH]) - np.array(ndcg[b]))), 4)}

    print(f"{'backend':<11}{'texts/s':>9}{'speedup':>9}{'mean cos':>10}{'min cos':>10}{'nDCG@10 AG/WA':>17}"
          f"{'loss':>8}")
    for b in backends:
        r = result[b]
        print(f"{b:<11}{r['texts_per_s']:>9}{r['speedup']:>9}{r['mean_cosine']:>10.5f}{r['min_cosine']:>10.5f}"
              f"{' / '.join(f'{x:.4f}' for x in r['ndcg@10']):>17}{r['ndcg_loss']:>8.4f}")
    print("speedup = backend texts/s / torch fp32 texts/s; loss = torch nDCG@10 - backend nDCG@10 "
          "(mean over Amazon-Google and Walmart-Amazon). Targets: onnx-int8 speedup >= 2.0, loss <= 0.005")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
