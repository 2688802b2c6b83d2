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
* Baseline (same run, same vectors): mutual nearest neighbours by cosine, no threshold. Also
  reported: the same matcher with `matching.duplicates: false` (strictly one-to-one, no twin
  links), to show what the duplicate-twin rule adds.
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
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jammi.embedding.texts import content_hash  # noqa: E402
from jammi.fusion.fuse import FusionResult, fuse_entity, record_texts  # noqa: E402
from jammi.ingest.extract import extract  # noqa: E402
from jammi.silver.recipe import to_silver  # noqa: E402
from jammi.spec.project import DEFAULT_MODEL, Project, parse_project  # noqa: E402

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


def _prf(found: set, gold: set) -> dict[str, float]:
    tp = len(found & gold)
    precision = tp / len(found) if found else 0.0
    recall = tp / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "links": len(found), "true_links": tp}


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


def _without_twins(project: Project, entity: str) -> Project:
    """The same project with `matching.duplicates: false`: strictly one-to-one links."""
    ent = project.entities[entity]
    ent = ent.model_copy(update={"matching": ent.matching.model_copy(update={"duplicates": False})})
    spec = project.spec.model_copy(update={"entities": {**project.entities, entity: ent}})
    return Project(spec, project.path)


def evaluate_real(
    name: str, project: Project, entity: str, gold_file: Path, embedder: CachedEmbedder
) -> dict:
    """Fuse one benchmark through fuse_entity and score it against its perfect mapping."""
    left, right = list(project.entities[entity].sources)
    frames = validated_frames(project, entity)
    t0 = time.perf_counter()
    result: FusionResult = fuse_entity(project, entity, frames, embedder)
    seconds = time.perf_counter() - t0
    gold_frame = pd.read_csv(gold_file, dtype=str)
    gold = set(zip(gold_frame.iloc[:, 0], gold_frame.iloc[:, 1], strict=True))
    links = result.links
    accepted = links[links["accepted"] & links["rule"].str.startswith("match:")]
    found = _oriented(accepted, left)
    candidates = _oriented(result.candidates, left)
    n_records = len(frames[left]) + len(frames[right])
    records = result.records
    vectors = embedder.encode(record_texts(records, project.entities[entity].embed_fields()))
    twins = accepted["rule"].str.startswith("match:duplicate")
    strict = _without_twins(project, entity)
    strict_links = fuse_entity(strict, entity, frames, embedder).links
    strict_found = _oriented(strict_links[strict_links["accepted"]
                                          & strict_links["rule"].str.startswith("match:")], left)
    out = {
        **_prf(found, gold),
        "duplicate_links": int(twins.sum()),
        "one_to_one_only": _prf(strict_found, gold),
        "blocking_recall": round(len(candidates & gold) / len(gold), 4),
        "candidates_per_record": round(len(candidates) / n_records, 2),
        "candidate_pairs": len(candidates),
        "records": {left: len(frames[left]), right: len(frames[right])},
        "gold_pairs": len(gold),
        "threshold": result.stats["thresholds"],
        "fuse_seconds": round(seconds, 2),
        "embed_seconds": round(result.stats["embed_s"], 2),
        "baseline_mutual_nn": _prf(mutual_nearest(records, vectors, left, right), gold),
        "embed_fields": project.entities[entity].embed_fields(),
        "compared_fields": project.entities[entity].compared_fields(),
    }
    print(f"  {name}: {out['links']} links, {out['candidate_pairs']} candidate pairs, "
          f"threshold {out['threshold']}, {seconds:.1f}s")
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
        "links": _prf(found, gold),
        "entities": _prf(clustered, gold),
        "thresholds": result.stats["thresholds"],
    }
    print(f"  synthetic: {out['records']} records in {seconds:.1f}s "
          f"({embed_s:.1f}s of it hashing embeddings)")
    return out


def main() -> dict:
    embedder = CachedEmbedder()
    results: dict = {}
    print("fusing dblp-acm ...")
    results["dblp_acm"] = evaluate_real("dblp_acm", dblp_acm_project(), "publication",
                                        DATA / "dblp-acm" / "DBLP-ACM_perfectMapping.csv", embedder)
    print("fusing amazon-google ...")
    results["amazon_google"] = evaluate_real(
        "amazon_google", amazon_google_project(), "product",
        DATA / "amazon-google" / "Amzon_GoogleProducts_perfectMapping.csv", embedder)
    print(f"  ({embedder.embedded} texts embedded now in {embedder.seconds:.1f}s, "
          "the rest from bench/.cache/)")
    print(f"fusing {SYNTHETIC_RECORDS:,} synthetic records from three sources ...")
    synthetic = evaluate_synthetic()
    results["synthetic_100k_seconds"] = synthetic["seconds_excluding_embedding"]
    results["synthetic_100k"] = synthetic
    results["model"] = DEFAULT_MODEL
    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(tmp, RESULTS)
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return results


def print_table(results: dict) -> None:
    print("\n| dataset | method | precision | recall | F1 | blocking recall | candidates/record |")
    print("|---|---|---|---|---|---|---|")
    for key, target in (("dblp_acm", 0.98), ("amazon_google", 0.70)):
        r = results[key]
        b = r["baseline_mutual_nn"]
        print(f"| {key} | mutual NN, cosine ({DEFAULT_MODEL.split('/')[-1]}) | {b['precision']:.3f} | "
              f"{b['recall']:.3f} | {b['f1']:.3f} | - | 1 |")
        o = r["one_to_one_only"]
        print(f"| {key} | jammi matcher, one-to-one only | {o['precision']:.3f} | {o['recall']:.3f} | "
              f"{o['f1']:.3f} | {r['blocking_recall']:.4f} | {r['candidates_per_record']:.1f} |")
        print(f"| {key} | jammi matcher (target F1 >= {target}) | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"**{r['f1']:.3f}** | {r['blocking_recall']:.4f} | {r['candidates_per_record']:.1f} |")
    s = results["synthetic_100k"]
    print(f"\nsynthetic, {s['records']:,} records / 3 sources, hashing embedder (not the model): "
          f"{s['seconds_excluding_embedding']:.1f}s excluding embedding (target < 120s; "
          f"{s['embed_seconds_hashing']:.1f}s hashing embeddings); stages {s['stage_seconds']}; "
          f"pairwise links P {s['links']['precision']:.3f} R {s['links']['recall']:.3f}, "
          f"entities P {s['entities']['precision']:.3f} R {s['entities']['recall']:.3f}")


if __name__ == "__main__":
    main()
