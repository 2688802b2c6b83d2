"""Benchmark entity fusion: link quality on two public record-linkage benchmarks and the time to
fuse 100,000 synthetic records from three sources.

* DBLP-ACM (bibliography, 2,616 x 2,294 records, 2,224 true pairs) and Amazon-Google (software
  products, 1,363 x 3,226 records, 1,300 true pairs), both from the Leipzig benchmark under
  ../shared/data. Each is declared as a user would declare it in jammi.yaml (two csv sources,
  cp1252 where the file needs it, and an `entities:` block with mappings and `matching:`), parsed
  with `parse_project`, extracted and validated like the silver assets do, and fused with
  `fuse_entity`: the code path of the `fused_<entity>` asset. Embeddings come from the real model
  (all-MiniLM-L6-v2) and are cached under bench/.cache/ by text hash.
* Scoring: accepted match links between the two sources against the perfect mapping.
  precision = true links / links; recall = true links / true pairs; blocking_recall = true pairs
  among the candidate pairs / true pairs; candidates_per_record = candidate pairs / (left records
  + right records), i.e. comparisons spent per input record.
* Baseline (same run, same vectors): mutual nearest neighbours by cosine, no threshold.
* Synthetic: 100,000 records of one `item` entity from three sources (~40k entities; each source
  holds a random subset, with typos, dropped words, reformatted codes and jittered prices). Timed
  end to end through `fuse_entity` minus its embedding time; embeddings here come from a cheap
  deterministic hashing embedder (character trigrams hashed into 256 dimensions), not the model.

Run: ``.venv/bin/python bench/fusion_quality.py``; writes bench/results/fusion_quality.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import string
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jammi_assets.config import DEFAULT_MODEL, Project, parse_project  # noqa: E402
from jammi_assets.frames.remediation import remediate  # noqa: E402
from jammi_assets.frames.schema import build_model, split_valid  # noqa: E402
from jammi_assets.fusion.fuse import FusionResult, fuse_entity  # noqa: E402
from jammi_assets.sources.extract import extract  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results" / "fusion_quality.json"
BATCH = 64
SYNTHETIC_RECORDS = 100_000
HASH_DIM = 256


def _source(path: Path, columns: dict[str, str], encoding: str) -> dict:
    return {"kind": "csv", "path": str(path), "encoding": encoding, "key": "id", "columns": columns}


def dblp_acm_project() -> Project:
    """DBLP-ACM as a jammi.yaml: publications with title, authors, venue and year."""
    cols = {"id": "str", "title": "str", "authors": "str", "venue": "str", "year": "int"}
    same = {"title": "title", "authors": "authors", "venue": "venue", "year": "year"}
    data = {
        "sources": {
            "dblp": _source(DATA / "dblp-acm" / "DBLP2.csv", cols, "cp1252"),
            "acm": _source(DATA / "dblp-acm" / "ACM.csv", cols, "utf-8"),
        },
        "entities": {
            "publication": {
                "fields": {"title": "str", "authors": "str", "venue": "str", "year": "int"},
                "sources": {"dblp": {"priority": 1, "mapping": same}, "acm": {"priority": 2, "mapping": same}},
                "matching": {
                    "fields": {"title": "text", "authors": "name", "year": "year"},
                    "embed": ["title", "authors", "venue", "year"],
                },
            }
        },
    }
    return parse_project(data, ROOT / "bench" / "dblp_acm.yaml")


def amazon_google_project() -> Project:
    """Amazon-Google as a jammi.yaml: software products; `model` is the title read for codes."""
    base = {"id": "str", "description": "str", "manufacturer": "str", "price": "float"}
    data = {
        "sources": {
            "amazon": _source(DATA / "amazon-google" / "Amazon.csv", {**base, "title": "str"}, "cp1252"),
            # Google writes some prices as "69.71 gbp": read as text, take the number in the mapping
            "google": _source(DATA / "amazon-google" / "GoogleProducts.csv",
                              {**base, "name": "str", "price": "str"}, "cp1252"),
        },
        "entities": {
            "product": {
                "fields": {"name": "str", "model": "str", "description": "str", "manufacturer": "str",
                           "price": "float"},
                "sources": {
                    "amazon": {"priority": 1, "mapping": {
                        "name": "title", "model": "title", "description": "description",
                        "manufacturer": "manufacturer", "price": "price"}},
                    "google": {"priority": 2, "mapping": {
                        "name": "name", "model": "name", "description": "description",
                        "manufacturer": "manufacturer",
                        "price": {"column": "price", "regex": r"([0-9]+(?:\.[0-9]+)?)", "cast": "float"}}},
                },
                "matching": {
                    "fields": {"name": "text", "model": "code", "manufacturer": "text", "price": "number"},
                    "embed": ["name", "manufacturer"],
                },
            }
        },
    }
    return parse_project(data, ROOT / "bench" / "amazon_google.yaml")


def validated_frames(project: Project, entity: str) -> dict[str, pd.DataFrame]:
    """Each source of `entity` extracted, remediated and validated as the silver assets do."""
    frames = {}
    for name in project.entities[entity].sources:
        spec = project.sources[name]
        fixed, _ = remediate(extract(project, name), spec)
        valid, quarantine = split_valid(fixed, build_model(name, spec))
        if len(quarantine):
            print(f"  {name}: {len(quarantine)} row(s) quarantined")
        frames[name] = valid
    return frames


class CachedEmbedder:
    """The real model behind a disk cache keyed by text hash (bench/.cache/<model>.npz)."""

    def __init__(self, model_id: str = DEFAULT_MODEL):
        self.model_id = model_id
        self.path = CACHE / f"{hashlib.sha1(model_id.encode()).hexdigest()[:12]}.npz"
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path) as saved:
                self.vectors = dict(zip(saved["keys"].tolist(), saved["vectors"], strict=True))
        self.seconds = 0.0
        self.embedded = 0

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()

    def __call__(self, texts: list[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        todo = list({k: t for k, t in zip(keys, texts, strict=True) if k not in self.vectors}.items())
        if todo:
            from jammi_assets.embeddings.model import load_encoder

            t0 = time.perf_counter()
            encoder = load_encoder(self.model_id)
            for i in range(0, len(todo), BATCH):
                chunk = todo[i:i + BATCH]
                vecs = encoder.encode([t for _, t in chunk])
                self.vectors.update(zip([k for k, _ in chunk], vecs, strict=True))
            self.seconds += time.perf_counter() - t0
            self.embedded += len(todo)
            self._save()
        return np.stack([self.vectors[k] for k in keys]).astype(np.float32)

    def _save(self) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(self.vectors)), vectors=np.stack(list(self.vectors.values())))
        os.replace(tmp, self.path)
