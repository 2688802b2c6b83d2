"""Benchmark entity fusion: link quality on four public record-linkage benchmarks, one default
configuration for all, and the time to fuse 100,000 synthetic records from three sources.

* DBLP-ACM (bibliography, 2,616 x 2,294 records, 2,224 true pairs), Amazon-Google (software,
  1,363 x 3,226, 1,300 true pairs), Walmart-Amazon (electronics, 2,554 x 22,074, 962 labelled
  true pairs) and Fodors-Zagat (restaurants, 533 x 331, 112 true pairs), all under
  ../shared/data. Each is declared as a user would declare it in jammi.yaml (two csv sources,
  with the encoding and quoting the file needs, and an `entities:` block mapping fields by their
  meaning and naming a comparator per field; no threshold, no weight), parsed with
  `parse_project`, extracted and validated like the silver assets do, and fused with
  `fuse_entity`: the code path of the `fused_<entity>` asset. Embeddings come from the real
  model (all-MiniLM-L6-v2) through the pipelines' encoder path (`encode_all`) and are cached
  under bench/.cache/ by model id + text, so reruns skip the model (a first run embeds ~35,000
  texts: many minutes on 2 CPUs).
* Scoring: accepted match links between the two sources against the gold. precision = true
  links / links; recall = true links / true pairs; blocking_recall = true pairs among the
  candidate pairs / true pairs; candidates_per_record = candidate pairs / (left + right
  records). Walmart-Amazon's gold is its labelled pairs only (train + valid + test): a link
  counts as true or false only when its pair is labelled; recall is over the 962 positives.
* Baseline (same run, same vectors): mutual nearest neighbours by cosine, no threshold.
* Ablation: the same sets with parts of the matcher switched off through `matching` settings
  (ABLATION below), so every variant runs the real code path; `hand_weighted` is the default
  matcher before issue 27 (`scoring: fields`), `default` the learned one.
* Noise (issue 27): each set again with a long free-text field added to the compared and
  embedded fields: its description where it has one (Amazon-Google), and on every set a column
  of NOISE_WORDS random words drawn from the set's own vocabulary; F1 and its drop from the
  same scorer without the field, learned and hand-weighted.
* Labels (issue 27): the review loop simulated with the gold answering (`simulate_review`):
  each round takes the unanswered pairs in the order `jammi fusion review` asks them (the
  smallest decision margin first, one pair per record first: labels.review_queue), up to
  LABEL_ROUNDS answers, and fuses again with every answer; F1 after 25, 50, 100, 200 and 400
  answers, and the held-out precision and recall the `labelled_pairs` check reports.
* Splink (issue 27): Splink 5 (DuckDB backend) on the same records and candidate pairs with the
  nearest equivalent comparisons, trained label-free (bench/fusion_splink.py); needs
  `pip install splink`.
* Synthetic: 100,000 records of one `item` entity from three sources (~40k entities; each source
  holds a random subset, with typos, dropped words, reformatted codes and jittered prices). Timed
  end to end through `fuse_entity` minus its embedding time; embeddings here come from a cheap
  deterministic hashing embedder (character trigrams hashed into 256 dimensions), not the model.

Run: ``flock /tmp/jammi-bench.lock python bench/fusion_quality.py``; writes
bench/results/fusion_quality.json (`--sets NAME ...` or `--no-synthetic`: a partial run that
prints and writes nothing, unless `--merge`, which writes the sets run into the file beside the
others, each with the commit it ran at under `runs`; `--no-splink` keeps a set's Splink
figures from the file; `--skip-noise NAME ...` leaves out a set's noise variants; `--ablation
NAME ...` runs only those variants).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import string
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jammi.embedding.encode import encode_all  # noqa: E402
from jammi.embedding.texts import content_hash  # noqa: E402
from jammi.fusion.blocking import words  # noqa: E402
from jammi.fusion.fuse import FusionResult, fuse_entity, record_texts  # noqa: E402
from jammi.ingest.extract import extract  # noqa: E402
from jammi.silver.recipe import to_silver  # noqa: E402
from jammi.spec.entities import FieldMapping  # noqa: E402
from jammi.spec.project import DEFAULT_MODEL, Project, parse_project  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results" / "fusion_quality.json"
BATCH = 64
SAVE_EVERY = 4096
SYNTHETIC_RECORDS = 100_000
HASH_DIM = 256
NOISE_WORDS = 24  # the random-words field: free text (scoring.FREE_TEXT_WORDS is 20)
NOISE_COLUMN = "_random_words"
NOISE_SEED = 27
# Ablation: `matching` settings of each variant, run on the same frames and vectors through
# fuse_entity. The default matcher (`default`, no settings changed) is each set's main result.
OFF = {"mutual_best": False, "duplicates": False}
ABLATION = {
    "cosine_otsu": {"scoring": "cosine", "auto_threshold": "otsu", **OFF},
    "cosine_mixture": {"scoring": "cosine", "auto_threshold": "mixture", **OFF},
    "cosine_otsu_mutual": {"scoring": "cosine", "auto_threshold": "otsu", "mutual_best": True,
                           "duplicates": False},
    "fields_otsu": {"scoring": "fields", "auto_threshold": "otsu", **OFF},
    "fields_mixture": {"scoring": "fields", "auto_threshold": "mixture", **OFF},
    "with_twins": {"duplicates": True},
    "previous": {"mutual_best": False, "duplicates": True},
    "hand_weighted": {"scoring": "fields"},
    "fellegi_sunter": {"scoring": "fellegi_sunter"},
}
ABLATION_STEPS = {
    "cosine_otsu": "embedding cosine alone, Otsu threshold, one-to-one",
    "cosine_mixture": "cosine, two-Gaussian mixture threshold instead of Otsu",
    "cosine_otsu_mutual": "cosine, Otsu + mutual best pairs above the near misses",
    "fields_otsu": "field comparators with the cosine (hand weights), Otsu",
    "fields_mixture": "field comparators with the cosine (hand weights), mixture threshold",
    "hand_weighted": "hand weights + Otsu + mutual best: the default matcher before issue 27",
    "fellegi_sunter": "Fellegi-Sunter match probability (EM, one partner per record), cut at 0.5",
    "default": "weights learned by EM (field importance x hand weight) + Otsu + mutual best: the default",
    "with_twins": "the default + duplicate twins (`duplicates: true`)",
    "previous": "the settings before issue 14: twins on, no mutual best (today's comparators)",
}
# F1 of the default matcher when issue 27 was filed (bench/results/fusion_quality.json then)
ISSUE_14_F1 = {"dblp_acm": 0.9903, "amazon_google": 0.6911, "walmart_amazon": 0.6703, "fodors_zagat": 0.9825}
LABEL_ROUNDS = (25, 50, 75, 100, 150, 200, 300, 400)  # answers after each review round
LABEL_STEPS = (25, 50, 100, 200, 400)  # the curve's reported points
NOISE_SCORINGS = ("learned", "fields")


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
                "sources": {"dblp": {"priority": 1, "mapping": same},
                            "acm": {"priority": 2, "mapping": same}},
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
            # Google writes some prices as "69.71 gbp": read as text, the mapping reads the number
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
                        "price": "price"}},  # "69.71 gbp": the mapping reads the number
                },
                "matching": {
                    "fields": {"name": "text", "model": "code", "manufacturer": "text", "price": "number"},
                    "embed": ["name", "manufacturer"],
                },
            }
        },
    }
    return parse_project(data, ROOT / "bench" / "amazon_google.yaml")


def walmart_amazon_project() -> Project:
    """Walmart-Amazon as a jammi.yaml: electronics with title, brand, model number and price."""
    cols = {"id": "str", "title": "str", "category": "str", "brand": "str", "modelno": "str",
            "price": "str"}
    mapping = {"name": "title", "brand": "brand", "model": "modelno", "category": "category",
               "price": "price"}
    data = {
        "sources": {
            "walmart": _source(DATA / "walmart-amazon" / "tableA.csv", cols, "utf-8"),
            "amazon": _source(DATA / "walmart-amazon" / "tableB.csv", cols, "utf-8"),
        },
        "entities": {
            "product": {
                "fields": {"name": "str", "brand": "str", "model": "str", "category": "str",
                           "price": "float"},
                "sources": {"walmart": {"priority": 1, "mapping": mapping},
                            "amazon": {"priority": 2, "mapping": mapping}},
                "matching": {
                    "fields": {"name": "text", "brand": "text", "model": "code", "price": "number"},
                    "embed": ["name", "brand"],
                },
            }
        },
    }
    return parse_project(data, ROOT / "bench" / "walmart_amazon.yaml")


def fodors_zagat_project() -> Project:
    """Fodors-Zagat as a jammi.yaml: restaurants with name, address, city, phone and cuisine; the
    files quote with ' and escape with a backslash."""
    cols = {"id": "str", "name": "str", "addr": "str", "city": "str", "phone": "str", "type": "str"}
    mapping = {"name": "name", "address": "addr", "city": "city", "phone": "phone", "cuisine": "type"}

    def source(file: str) -> dict:
        return {**_source(DATA / "fodors-zagat" / file, cols, "utf-8"), "quotechar": "'",
                "escapechar": "\\"}

    data = {
        "sources": {"fodors": source("fodors.csv"), "zagat": source("zagats.csv")},
        "entities": {
            "restaurant": {
                "fields": {"name": "str", "address": "str", "city": "str", "phone": "str",
                           "cuisine": "str"},
                "sources": {"fodors": {"priority": 1, "mapping": mapping},
                            "zagat": {"priority": 2, "mapping": mapping}},
                "matching": {
                    "fields": {"name": "text", "address": "text", "city": "text", "phone": "exact"},
                    "embed": ["name", "address", "city"],
                },
            }
        },
    }
    return parse_project(data, ROOT / "bench" / "fodors_zagat.yaml")


def validated_frames(project: Project, entity: str) -> dict[str, pd.DataFrame]:
    """Each source of `entity` extracted, remediated and validated as the silver assets do."""
    frames = {}
    for name in project.entities[entity].sources:
        spec = project.sources[name]
        silver = to_silver(extract(project, name), spec, name)
        if len(silver.quarantine):
            print(f"  {name}: {len(silver.quarantine)} row(s) quarantined")
        frames[name] = silver.valid
    return frames


class CachedEmbedder:
    """The real model behind a disk cache keyed by model id + text (bench/.cache/<model>.npz);
    an Encoder, so fusion calls it as it calls the model."""

    dimensions, max_seq_length = 384, 256

    def __init__(self, model_id: str = DEFAULT_MODEL):
        self.model_id = model_id
        self.path = CACHE / f"{hashlib.sha1(model_id.encode()).hexdigest()[:12]}.npz"
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path) as saved:
                self.vectors = dict(zip(saved["keys"].tolist(), saved["vectors"], strict=True))
        self.seconds = 0.0
        self.embedded = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        keys = [content_hash(self.model_id, t) for t in texts]
        todo = list({k: t for k, t in zip(keys, texts, strict=True) if k not in self.vectors}.items())
        if todo:
            from jammi.embedding.model import load_encoder

            t0 = time.perf_counter()
            encoder = load_encoder(self.model_id)
            for i in range(0, len(todo), SAVE_EVERY):  # saved as it goes: a long first run resumes
                chunk = todo[i:i + SAVE_EVERY]
                vecs = encode_all(encoder, [t for _, t in chunk], BATCH)
                self.vectors.update(zip([k for k, _ in chunk], vecs, strict=True))
                self._save()
            self.seconds += time.perf_counter() - t0
            self.embedded += len(todo)
            self._save()
        return np.stack([self.vectors[k] for k in keys]).astype(np.float32)

    def _save(self) -> None:
        """Merge into the file under a lock: two runs at once each keep what the other embedded."""
        from filelock import FileLock

        CACHE.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            if self.path.exists():
                with np.load(self.path) as saved:
                    for key, vec in zip(saved["keys"].tolist(), saved["vectors"], strict=True):
                        self.vectors.setdefault(key, vec)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, keys=np.array(list(self.vectors)), vectors=np.stack(list(self.vectors.values())))
            os.replace(tmp, self.path)


@dataclass(frozen=True)
class Gold:
    """True pairs (left-source id, right-source id) and, where the gold is partial, the pairs
    that are labelled at all: a link outside them is neither true nor false."""

    pairs: set
    labelled: set | None = None


@dataclass(frozen=True)
class BenchSet:
    name: str
    project: Project
    entity: str
    gold: Gold


def _pairs_file(path: Path, label: bool = False) -> set:
    frame = pd.read_csv(path, dtype=str)
    if label:
        frame = frame[frame["label"] == "1"]
    return set(zip(frame.iloc[:, 0], frame.iloc[:, 1], strict=True))


def bench_sets() -> list[BenchSet]:
    wa = DATA / "walmart-amazon"
    labelled = set().union(*(_pairs_file(wa / f) for f in ("train.csv", "valid.csv", "test.csv")))
    return [
        BenchSet("dblp_acm", dblp_acm_project(), "publication",
                 Gold(_pairs_file(DATA / "dblp-acm" / "DBLP-ACM_perfectMapping.csv"))),
        BenchSet("amazon_google", amazon_google_project(), "product",
                 Gold(_pairs_file(DATA / "amazon-google" / "Amzon_GoogleProducts_perfectMapping.csv"))),
        BenchSet("walmart_amazon", walmart_amazon_project(), "product",
                 Gold(_pairs_file(wa / "matches_train_valid_test.csv"), labelled)),
        BenchSet("fodors_zagat", fodors_zagat_project(), "restaurant",
                 Gold(_pairs_file(DATA / "fodors-zagat" / "fodors-zagats_perfectMapping.csv"))),
    ]


def _prf(found: set, gold: Gold) -> dict[str, float]:
    judged = found if gold.labelled is None else found & gold.labelled
    tp = len(found & gold.pairs)
    precision = tp / len(judged) if judged else 0.0
    recall = tp / len(gold.pairs) if gold.pairs else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "links": len(found), "judged_links": len(judged), "true_links": tp}


def _oriented(frame: pd.DataFrame, left: str) -> set[tuple[str, str]]:
    """(left-source id, right-source id) pairs of a links/candidates frame, either orientation."""
    fwd = frame["left_source"] == left
    pairs = set(zip(frame.loc[fwd, "left_id"], frame.loc[fwd, "right_id"], strict=True))
    back = frame["right_source"] == left
    return pairs | set(zip(frame.loc[back, "right_id"], frame.loc[back, "left_id"], strict=True))


def mutual_nearest(records: pd.DataFrame, vectors: np.ndarray, left: str, right: str) -> set[tuple[str, str]]:
    """Baseline: pairs that are each other's nearest neighbour by cosine (exact), no threshold."""
    lmask = (records["_source"] == left).to_numpy()
    rmask = (records["_source"] == right).to_numpy()
    sims = vectors[lmask] @ vectors[rmask].T
    best_r, best_l = sims.argmax(axis=1), sims.argmax(axis=0)
    mutual = np.flatnonzero(best_l[best_r] == np.arange(len(best_r)))
    lid, rid = records.loc[lmask, "_record_id"].to_numpy(), records.loc[rmask, "_record_id"].to_numpy()
    return set(zip(lid[mutual], rid[best_r[mutual]], strict=True))


def _with_matching(project: Project, entity: str, **changes) -> Project:
    """The same project with `matching` fields changed (an ablation variant)."""
    ent = project.entities[entity]
    ent = ent.model_copy(update={"matching": ent.matching.model_copy(update=changes)})
    spec = project.spec.model_copy(update={"entities": {**project.entities, entity: ent}})
    return Project(spec, project.path)


def _with_compared(project: Project, entity: str, name: str, kind: str = "text",
                   column: str | None = None) -> Project:
    """The same project with `name` compared as `kind` and embedded too; with `column`, `name` is
    a new str field that every source maps from `column`."""
    ent = project.entities[entity]
    update: dict = {"matching": ent.matching.model_copy(update={
        "fields": {**ent.compared_fields(), name: kind},
        "embed": [*ent.embed_fields(), name]})}
    if column is not None:
        update["fields"] = {**ent.fields, name: "str"}
        mapped = FieldMapping(column=column)
        update["sources"] = {s: c.model_copy(update={"mapping": {**c.mapping, name: mapped}})
                             for s, c in ent.sources.items()}
    ent = ent.model_copy(update=update)
    spec = project.spec.model_copy(update={"entities": {**project.entities, entity: ent}})
    return Project(spec, project.path)


def random_words(frames: dict[str, pd.DataFrame], project: Project, entity: str,
                 seed: int = NOISE_SEED) -> dict[str, pd.DataFrame]:
    """Each frame with a NOISE_COLUMN of NOISE_WORDS words drawn at random from the set's own
    vocabulary (the words of every mapped str column of both sources, as often as they occur):
    a long free-text field that says nothing about which records match."""
    ent = project.entities[entity]
    counts: dict[str, int] = {}
    for name, contrib in ent.sources.items():
        for target, mapping in contrib.mapping.items():
            if ent.fields[target] != "str":
                continue
            for col in mapping.inputs:
                for value in frames[name][col].dropna().astype(str):
                    for w in words(value):
                        counts[w] = counts.get(w, 0) + 1
    vocab = np.array(sorted(counts))
    p = np.array([counts[w] for w in vocab], dtype=np.float64)
    rng = np.random.default_rng(seed)
    out = {}
    for name, frame in frames.items():
        drawn = rng.choice(len(vocab), size=(len(frame), NOISE_WORDS), p=p / p.sum())
        out[name] = frame.assign(**{NOISE_COLUMN: [" ".join(vocab[row]) for row in drawn]})
    return out


def noise_variants(bench: BenchSet, frames: dict[str, pd.DataFrame]) -> dict[str, tuple[Project, dict]]:
    """The set declared with a long free-text field added to the compared and embedded fields:
    its description where it has one, and on every set a column of random words."""
    project, entity = bench.project, bench.entity
    out = {}
    if "description" in project.entities[entity].fields:
        out["description"] = (_with_compared(project, entity, "description"), frames)
    out["random_words"] = (_with_compared(project, entity, "noise", column=NOISE_COLUMN),
                           random_words(frames, project, entity))
    return out


def _links(result: FusionResult) -> pd.DataFrame:
    links = result.links
    return links[links["accepted"] & links["rule"].str.startswith("match:")]


def evaluate_real(bench: BenchSet, embedder: CachedEmbedder, noise_sets: bool = True,
                  previous: dict | None = None, splink: bool = True,
                  variants: tuple[str, ...] = ()) -> dict:
    """Fuse one benchmark through fuse_entity with the default matching, score it against its
    gold, and score each ablation variant on the same frames and vectors."""
    project, entity, gold = bench.project, bench.entity, bench.gold
    left, right = list(project.entities[entity].sources)
    frames = validated_frames(project, entity)
    t0 = time.perf_counter()
    result: FusionResult = fuse_entity(project, entity, frames, embedder)
    seconds = time.perf_counter() - t0
    accepted = _links(result)
    found = _oriented(accepted, left)
    candidates = _oriented(result.candidates, left)
    n_records = len(frames[left]) + len(frames[right])
    records = result.records
    vectors = embedder.encode(record_texts(records, project.entities[entity].embed_fields()))
    baseline = _prf(mutual_nearest(records, vectors, left, right), gold)
    earlier = (previous or {}).get("ablation", {})
    ablation = {k: {**v, "carried_over": True} for k, v in earlier.items() if variants and k not in variants}
    for variant, changes in ABLATION.items():
        if variants and variant not in variants:
            continue
        variant_result = fuse_entity(_with_matching(project, entity, **changes), entity, frames, embedder)
        ablation[variant] = {**_prf(_oriented(_links(variant_result), left), gold),
                             "threshold": variant_result.stats["thresholds"]}
    label_free = _prf(found, gold)["f1"]
    noise = evaluate_noise(bench, frames, embedder, label_free, ablation["hand_weighted"]["f1"]) \
        if noise_sets else {"not_run": True}
    curve = simulate_review(bench, frames, embedder, result)
    kept = (previous or {}).get("splink")
    compared = evaluate_splink(bench, result, embedder, candidates) if splink else (kept or {"not_run": True})
    out = {
        **_prf(found, gold),
        "blocking_recall": round(len(candidates & gold.pairs) / len(gold.pairs), 4),
        "candidates_per_record": round(len(candidates) / n_records, 2),
        "baseline_f1": baseline["f1"],
        "baseline_mutual_nn": baseline,
        "duplicate_links": int(accepted["rule"].str.startswith("match:duplicate").sum()),
        "mutual_best_links": int(accepted["rule"].str.startswith("match:mutual best").sum()),
        "candidate_pairs": len(candidates),
        "records": {left: len(frames[left]), right: len(frames[right])},
        "gold_pairs": len(gold.pairs),
        "labelled_pairs": len(gold.labelled) if gold.labelled is not None else None,
        "threshold": result.stats["thresholds"],
        "fuse_seconds": round(seconds, 2),
        "embed_seconds": round(result.stats["embed_s"], 2),
        "ablation": ablation,
        "embed_fields": project.entities[entity].embed_fields(),
        "compared_fields": project.entities[entity].compared_fields(),
        "issue_14_f1": ISSUE_14_F1.get(bench.name),
        "hand_weighted_f1": ablation["hand_weighted"]["f1"],
        "match_models": result.models,
        "noise": noise,
        "labels_curve": curve,
        "splink": compared,
    }
    print(f"  {bench.name}: {out['links']} links, F1 {out['f1']:.3f} (baseline {out['baseline_f1']:.3f}), "
          f"{out['candidate_pairs']} candidate pairs, threshold {out['threshold']}, {seconds:.1f}s")
    return out


def evaluate_noise(bench: BenchSet, frames: dict[str, pd.DataFrame], embedder: CachedEmbedder,
                   learned_f1: float, hand_f1: float) -> dict:
    """F1 with a long free-text field added to the compared and embedded fields, learned and hand
    weights, and the drop from the same scorer without it."""
    left = list(bench.project.entities[bench.entity].sources)[0]
    before = {"learned": learned_f1, "fields": hand_f1}
    out = {}
    for name, (project, noisy) in noise_variants(bench, frames).items():
        out[name] = {}
        for scoring in NOISE_SCORINGS:
            result = fuse_entity(_with_matching(project, bench.entity, scoring=scoring), bench.entity, noisy,
                                 embedder)
            prf = _prf(_oriented(_links(result), left), bench.gold)
            blocked = _oriented(result.candidates, left)
            recall = len(blocked & bench.gold.pairs) / len(bench.gold.pairs)
            out[name][scoring] = {**prf, "drop": round(before[scoring] - prf["f1"], 4),
                                  "blocking_recall": round(recall, 4),
                                  "threshold": result.stats["thresholds"]}
            print(f"  {bench.name} + {name} ({scoring}): F1 {prf['f1']:.3f} "
                  f"(drop {before[scoring] - prf['f1']:+.3f})")
    return out


def _answer(gold: Gold, pair: tuple[str, str]) -> bool | None:
    """The simulated reviewer: yes for a gold pair, no for any other; where the gold is partial
    (Walmart-Amazon), no only for a pair labelled a non-match, skip for an unlabelled one."""
    if pair in gold.pairs:
        return True
    if gold.labelled is not None and pair not in gold.labelled:
        return None
    return False


def simulate_review(bench: BenchSet, frames: dict[str, pd.DataFrame], embedder: CachedEmbedder,
                    label_free: FusionResult) -> dict:
    """The review loop with the gold answering: each round takes the unanswered pairs in the
    review's order (labels.review_queue, as `jammi fusion review` does) until LABEL_ROUNDS answers, then fuses
    again with every answer so far (as the next materialization does)."""
    from jammi.fusion.labels import labels_frame, review_queue

    project, entity, gold = bench.project, bench.entity, bench.gold
    first = list(project.entities[entity].sources)[0]
    rows: list[dict] = []
    skipped: set = set()
    result = label_free
    curve = {}
    for target in LABEL_ROUNDS:
        queue = review_queue(result.pairs, labels_frame(rows))
        for pair in queue[["left_source", "left_id", "right_source", "right_id"]].itertuples(index=False):
            if len(rows) >= target:
                break
            if tuple(pair) in skipped:
                continue
            oriented = (pair[1], pair[3]) if pair[0] == first else (pair[3], pair[1])
            answer = _answer(gold, oriented)
            if answer is None:
                skipped.add(tuple(pair))
                continue
            rows.append({"left_source": pair[0], "left_id": pair[1], "right_source": pair[2],
                         "right_id": pair[3], "is_match": answer})
        result = fuse_entity(project, entity, frames, embedder, labels=labels_frame(rows))
        if len(rows) in LABEL_STEPS:
            prf = _prf(_oriented(_links(result), first), gold)
            said = result.pairs[result.pairs["answer"].notna()]
            decided, yes = said["held_out"] == 1, said["answer"] == 1
            curve[str(len(rows))] = {
                **prf, "yes_answers": int(yes.sum()), "skipped": len(skipped),
                "threshold": result.stats["thresholds"],
                "held_out_precision": round(float((decided & yes).sum() / max(decided.sum(), 1)), 4),
                "held_out_recall": round(float((decided & yes).sum() / max(yes.sum(), 1)), 4),
            }
            print(f"  {bench.name}: {len(rows)} answers ({int(yes.sum())} yes): F1 {prf['f1']:.3f}")
    return curve


def evaluate_splink(bench: BenchSet, result: FusionResult, embedder: CachedEmbedder,
                    candidates: set) -> dict:
    """Splink over Jammi's records and candidate pairs (bench/fusion_splink.py), label-free: its
    default training, and with the one-partner prior."""
    from bench.fusion_splink import run_splink, splink_decisions

    ent = bench.project.entities[bench.entity]
    left, right = list(ent.sources)
    vectors = embedder.encode(record_texts(result.records, ent.embed_fields()))
    out = {"blocking_recall": round(len(candidates & bench.gold.pairs) / len(bench.gold.pairs), 4)}
    for name, prior in (("default_training", False), ("one_partner_prior", True)):
        run = run_splink(result.records, vectors, ent.compared_fields(), result.candidates, left, right,
                         one_partner_prior=prior)
        decisions = {k: _prf(v, bench.gold) for k, v in splink_decisions(run["pairs"]).items()}
        out[name] = {**decisions, "pairs_scored": run["scored"], "seconds": round(run["seconds"], 1)}
        print(f"  {bench.name}: splink {name}: F1 {decisions['splink']['f1']:.3f}, one-to-one "
              f"{decisions['splink_one_to_one']['f1']:.3f}")
    return out


# -- synthetic ----------------------------------------------------------------------------------


def _pseudo_words(rng: random.Random, n: int) -> list[str]:
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 9))))
    return sorted(words)


def _typo(rng: random.Random, text: str) -> str:
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    if not letters:
        return text
    i = rng.choice(letters)
    op = rng.choice(("sub", "del", "swap"))
    if op == "sub":
        return text[:i] + rng.choice(string.ascii_lowercase) + text[i + 1:]
    if op == "del":
        return text[:i] + text[i + 1:]
    return text[:i] + text[i + 1:i + 2] + text[i] + text[i + 2:]


def synthetic_frames(
    n_records: int = SYNTHETIC_RECORDS, seed: int = 7
) -> tuple[dict[str, pd.DataFrame], set]:
    """Three sources describing one pool of items; each item is in each source with p = 0.75.

    A copy may get a typo in its name (30%), lose one name word (20%), write its code with a
    hyphen or in upper case (30%), lose its manufacturer (15%) and have its price moved by up
    to 5%. Returns the raw frames and the true cross-source pairs (as (source:id, source:id))."""
    rng = random.Random(seed)
    vocab = _pseudo_words(rng, 4000)
    makers = _pseudo_words(rng, 300)
    n_items = int(n_records / 2.2)  # ~2.25 copies per item on average: a surplus, trimmed below
    sources = {s: [] for s in ("shop_a", "shop_b", "shop_c")}
    members: list[list[str]] = []
    for item in range(n_items):
        name = rng.sample(vocab, rng.randint(3, 6))
        code = "".join(rng.choices(string.ascii_lowercase, k=2)) + str(rng.randint(100, 9999))
        has_code = rng.random() < 0.7
        maker = rng.choice(makers)
        price = round(rng.uniform(5, 2000), 2)
        here = [s for s in sources if rng.random() < 0.75]
        ids = []
        for s in here:
            words = list(name)
            if rng.random() < 0.2 and len(words) > 3:
                words.pop(rng.randrange(len(words)))
            title = " ".join(words)
            if rng.random() < 0.3:
                title = _typo(rng, title)
            c = code
            if rng.random() < 0.3:
                c = (c[:2] + "-" + c[2:]) if rng.random() < 0.5 else c.upper()
            if has_code:
                title = f"{title} {c}"
            rid = f"{s}-{item}"
            sources[s].append({"id": rid, "title": title, "maker": None if rng.random() < 0.15 else maker,
                               "price": round(price * rng.uniform(0.95, 1.05), 2)})
            ids.append(f"{s}:{rid}")
        members.append(ids)
    frames = {s: pd.DataFrame(rows) for s, rows in sources.items()}
    total = sum(len(f) for f in frames.values())
    excess = total - n_records  # trim to exactly n_records, dropping from the end
    for s in reversed(list(frames)):
        if excess <= 0:
            break
        cut = min(excess, len(frames[s]) - 1)
        frames[s] = frames[s].iloc[: len(frames[s]) - cut]
        excess -= cut
    kept = {f"{s}:{i}" for s, f in frames.items() for i in f["id"]}
    gold = set()
    for ids in members:
        ids = sorted(i for i in ids if i in kept)
        gold.update((a, b) for n, a in enumerate(ids) for b in ids[n + 1:])
    return frames, gold


def synthetic_project() -> Project:
    cols = {"id": "str", "title": "str", "maker": "str", "price": "float"}
    mapping = {"name": "title", "code": "title", "manufacturer": "maker", "price": "price"}
    data = {
        "sources": {s: {"kind": "parquet", "path": f"{s}.parquet", "key": "id", "columns": cols}
                    for s in ("shop_a", "shop_b", "shop_c")},
        "entities": {"item": {
            "fields": {"name": "str", "code": "str", "manufacturer": "str", "price": "float"},
            "sources": {s: {"priority": p, "mapping": mapping}
                        for p, s in enumerate(("shop_a", "shop_b", "shop_c"), start=1)},
            "matching": {"fields": {"name": "text", "code": "code", "manufacturer": "text",
                                    "price": "number"},
                         "embed": ["name", "manufacturer"]},
        }},
    }
    return parse_project(data, ROOT / "bench" / "synthetic.yaml")


class HashingEncoder:
    """Cheap deterministic stand-in for a model: character trigrams hashed into HASH_DIM buckets,
    L2-normalised. Only used for the synthetic timing."""

    model_id, dimensions, max_seq_length = "hashing-trigrams", HASH_DIM, 10**6

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), HASH_DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f"  {text.casefold()} "
            for i in range(len(padded) - 2):
                out[row, _zlib_hash(padded[i:i + 3]) % HASH_DIM] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


def _zlib_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def evaluate_synthetic() -> dict:
    project = synthetic_project()
    raw, gold = synthetic_frames()
    frames = {}
    for name, frame in raw.items():
        frames[name] = to_silver(frame, project.sources[name], name).valid
    t0 = time.perf_counter()
    result = fuse_entity(project, "item", frames, HashingEncoder())
    seconds = time.perf_counter() - t0
    links = result.links[result.links["accepted"] & result.links["rule"].str.startswith("match:")]
    found = {tuple(sorted((f"{a}:{b}", f"{c}:{d}"))) for a, b, c, d in
             links[["left_source", "left_id", "right_source", "right_id"]].itertuples(index=False)}
    # clusters: every pair inside a fused entity counts, links or not
    rec = result.records
    members = (rec["_source"] + ":" + rec["_record_id"]).groupby(rec["_entity_id"]).agg(sorted)
    clustered = {(a, b) for ids in members for n, a in enumerate(ids) for b in ids[n + 1:]}
    embed_s = result.stats["embed_s"]
    out = {
        "records": int(len(rec)),
        "true_pairs": len(gold),
        "total_seconds": round(seconds, 2),
        "embed_seconds_hashing": round(embed_s, 2),
        "seconds_excluding_embedding": round(seconds - embed_s, 2),
        "stage_seconds": {k: result.stats[k] for k in ("standardize_s", "match_s", "cluster_s", "resolve_s")},
        "candidate_pairs": result.stats["candidate_pairs"],
        "links": _prf(found, Gold(gold)),
        "entities": _prf(clustered, Gold(gold)),
        "thresholds": result.stats["thresholds"],
    }
    print(f"  synthetic: {out['records']} records in {seconds:.1f}s "
          f"({embed_s:.1f}s of it hashing embeddings)")
    return out


def _commit() -> str:
    import subprocess

    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "jammi", "bench/*.py"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return found.stdout.strip() + ("+uncommitted" if dirty else "")


def acceptance(results: dict) -> dict:
    """Issue 27's acceptance, per set, from the figures of this file."""
    out = {}
    for name, r in results["sets"].items():
        today = ISSUE_14_F1.get(name, r["hand_weighted_f1"])
        drops = {k: v["learned"]["drop"] for k, v in r["noise"].items() if k != "not_run"}
        curve = r["labels_curve"]
        at_100 = curve.get("100", {}).get("f1")
        out[name] = {
            "label_free_f1": r["f1"], "issue_14_f1": today,
            "hand_weighted_f1_same_run": r["hand_weighted_f1"],
            "label_free_ok": r["f1"] >= today - 0.01,
            "noise_drops": drops,
            "noise_ok": None if not drops else all(d <= 0.02 for d in drops.values()),
            "f1_by_answers": {k: v["f1"] for k, v in curve.items()},
            "labels_ok": None if r["f1"] >= 0.95 else (at_100 is not None and at_100 >= r["f1"] + 0.03),
            "splink_f1": {k: r["splink"][k]["splink"]["f1"]
                          for k in ("default_training", "one_partner_prior") if k in r["splink"]},
            "splink_one_to_one_f1": {k: r["splink"][k]["splink_one_to_one"]["f1"]
                                     for k in ("default_training", "one_partner_prior") if k in r["splink"]},
            "blocking_recall": r["blocking_recall"],
        }
    return out


def main(names: list[str] | None = None, synthetic: bool = True, merge: bool = False,
         skip_noise: tuple[str, ...] = (), splink: bool = True, variants: tuple[str, ...] = ()) -> dict:
    embedder = CachedEmbedder()
    results: dict = {"sets": {}}
    if merge and RESULTS.exists():
        results = json.loads(RESULTS.read_text())
    runs = results.setdefault("runs", {})
    for bench in bench_sets():
        if names and bench.name not in names:
            continue
        print(f"fusing {bench.name} ...")
        t0 = time.perf_counter()
        results["sets"][bench.name] = evaluate_real(bench, embedder, bench.name not in skip_noise,
                                                    results["sets"].get(bench.name), splink, variants)
        runs[bench.name] = {"commit": _commit(), "seconds": round(time.perf_counter() - t0, 1)}
    print(f"  ({embedder.embedded} texts embedded now in {embedder.seconds:.1f}s, "
          "the rest from bench/.cache/)")
    sets = results["sets"].items()
    results["ablation"] = {v: {k: (r["f1"] if v == "default" else r["ablation"][v]["f1"]) for k, r in sets
                               if v == "default" or v in r["ablation"]}
                           for v in ABLATION_STEPS}
    results["ablation_steps"] = dict(ABLATION_STEPS)
    if synthetic:
        print(f"fusing {SYNTHETIC_RECORDS:,} synthetic records from three sources ...")
        out = evaluate_synthetic()
        results["synthetic_100k_seconds"] = out["seconds_excluding_embedding"]
        results["synthetic_100k"] = out
        runs["synthetic_100k"] = {"commit": _commit()}
    results["model"] = DEFAULT_MODEL
    results["machine"] = f"{os.cpu_count()} CPUs, no GPU (torch CPU)"
    if all("noise" in r for r in results["sets"].values()):
        results["acceptance"] = acceptance(results)
    print_table(results)
    if not merge and (names or not synthetic):
        print("\n(partial run: results not written; --merge writes them into the results file)")
        return results
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(CACHE / "results.lock")):
        if merge and RESULTS.exists():  # another run may have written its sets since this one began
            latest = json.loads(RESULTS.read_text())
            ran = [b.name for b in bench_sets() if not names or b.name in names]
            latest["sets"].update({k: results["sets"][k] for k in ran})
            latest.setdefault("runs", {}).update({k: runs[k] for k in ran})
            for key in ("synthetic_100k_seconds", "synthetic_100k"):
                if synthetic:
                    latest[key] = results[key]
            latest["model"], latest["machine"] = results["model"], results["machine"]
            latest["ablation_steps"] = results["ablation_steps"]
            latest["ablation"] = {v: {k: (r["f1"] if v == "default" else r["ablation"][v]["f1"])
                                      for k, r in latest["sets"].items()
                                      if v == "default" or v in r["ablation"]} for v in ABLATION_STEPS}
            if all("noise" in r for r in latest["sets"].values()):
                latest["acceptance"] = acceptance(latest)
            results = latest
        tmp = RESULTS.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
        os.replace(tmp, RESULTS)
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return results


def print_table(results: dict) -> None:
    print("\n| set | precision | recall | F1 | baseline F1 (mutual NN) | blocking recall "
          "| candidates/record |")
    print("|---|---|---|---|---|---|---|")
    for key, r in results["sets"].items():
        print(f"| {key} | {r['precision']:.3f} | {r['recall']:.3f} | **{r['f1']:.3f}** | "
              f"{r['baseline_f1']:.3f} | {r['blocking_recall']:.4f} | {r['candidates_per_record']:.1f} |")
    sets = list(results["sets"])
    print("\nablation (F1 of each variant, same frames and vectors)\n")
    print("| variant | " + " | ".join(sets) + " |")
    print("|---" * (len(sets) + 1) + "|")
    for variant, f1s in results["ablation"].items():
        print(f"| {variant}: {ABLATION_STEPS[variant]} | "
              + " | ".join(f"{f1s[s]:.3f}" if s in f1s else "-" for s in sets) + " |")
    s = results.get("synthetic_100k")
    if s:
        print(f"\nsynthetic, {s['records']:,} records / 3 sources, hashing embedder (not the model): "
              f"{s['seconds_excluding_embedding']:.1f}s excluding embedding (target < 120s; "
              f"{s['embed_seconds_hashing']:.1f}s hashing embeddings); stages {s['stage_seconds']}; "
              f"pairwise links P {s['links']['precision']:.3f} R {s['links']['recall']:.3f}, "
              f"entities P {s['entities']['precision']:.3f} R {s['entities']['recall']:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="*", help="only these sets (a partial run writes no JSON)")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the 100k synthetic timing")
    parser.add_argument("--merge", action="store_true",
                        help="write the sets run into the results file, keeping the others (each set "
                        "records the commit it ran at)")
    parser.add_argument("--skip-noise", nargs="*", default=[], help="sets whose noise variants are not run")
    parser.add_argument("--no-splink", action="store_true",
                        help="keep each set's Splink figures from the results file (with --merge)")
    parser.add_argument("--ablation", nargs="*", default=[], help="only these ablation variants")
    args = parser.parse_args()
    main(args.sets, synthetic=not args.no_synthetic, merge=args.merge, skip_noise=tuple(args.skip_noise),
         splink=not args.no_splink, variants=tuple(args.ablation))
