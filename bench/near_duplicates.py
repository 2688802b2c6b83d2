"""Benchmark near-duplicate detection: speed at 10k/30k/100k texts, precision/recall on planted
near-duplicates, and the pairs found in the Google products table.

Corpus construction (documented so the ground truth is fair):

* Base texts: ``make_products(n_base, dirty=False)`` title + ". " + description, then a unique
  serial word (``sku`` + 8 random alphanumerics) and 6 words drawn from a pool of 5,000 random
  pseudo-words (5-9 letters). The generator is templated, so without the suffix many products
  differ in only one or two attribute words and are legitimately near-duplicates of each other;
  the suffix adds ~55 shingles unique to each base, which pushes two products sharing every
  template field to Jaccard ~0.5, far under the 0.8 threshold.
* Planted duplicates: 5% of the final rows are copies of randomly chosen bases (a base gets 1 copy,
  or 2 copies with probability 0.2 to make clusters of 3). Each copy gets one mutation, chosen
  uniformly: ``typo`` (1-2 character edits - substitution, insertion, deletion or swap of adjacent
  letters - at random letter positions), ``reorder`` (the words shuffled), ``case`` (upper, lower
  or swapped case), or ``mixed`` (reorder + case + 1 typo).
* Truth: every pair inside a planted group (base + its copies). Precision = found pairs that are
  in the truth / found pairs; recall = truth pairs whose two keys are in one found cluster / truth
  pairs (a pair already connected through others is not verified, so it is not listed). A found
  pair between two unrelated bases counts as a false positive.

Run: ``.venv/bin/python bench/near_duplicates.py``; writes bench/results/near_duplicates.json.
"""

from __future__ import annotations

import json
import random
import string
import sys
import time
from itertools import combinations
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jammi.demo.generate import make_products  # noqa: E402
from jammi.quality.near_duplicates import find_near_duplicates  # noqa: E402

SIZES = (10_000, 30_000, 100_000)
THRESHOLD = 0.8
NUM_PERM = 128
PLANT_RATE = 0.05
GOOGLE = Path("/work/shared/data/amazon-google/GoogleProducts.csv")
RESULTS = ROOT / "bench" / "results" / "near_duplicates.json"


def _typo(rng: random.Random, text: str, edits: int) -> str:
    chars = list(text)
    for _ in range(edits):
        letters = [i for i, c in enumerate(chars) if c.isalpha()]
        i = rng.choice(letters)
        op = rng.choice(["sub", "ins", "del", "swap"])
        if op == "sub":
            chars[i] = rng.choice([c for c in string.ascii_lowercase if c != chars[i].lower()])
        elif op == "ins":
            chars.insert(i, rng.choice(string.ascii_lowercase))
        elif op == "del":
            del chars[i]
        elif i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def _mutate(rng: random.Random, text: str, kind: str) -> str:
    if kind == "typo":
        return _typo(rng, text, rng.choice([1, 2]))
    if kind == "reorder":
        words = text.split()
        rng.shuffle(words)
        return " ".join(words)
    if kind == "case":
        return rng.choice([str.upper, str.lower, str.swapcase])(text)
    words = text.split()
    rng.shuffle(words)
    return _typo(rng, " ".join(words).upper(), 1)


def make_corpus(n: int, seed: int = 0) -> tuple[list[str], list[str], set[tuple[str, str]]]:
    """`n` rows: distinct bases plus planted near-duplicates; returns keys, texts, truth pairs."""
    rng = random.Random(seed)
    pool = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(5, 9))) for _ in range(5000)]
    n_copies = int(n * PLANT_RATE)
    n_base = n - n_copies
    products = make_products(n_base, dirty=False)
    keys, texts = [], []
    for p in products:
        serial = "sku" + "".join(rng.choices(string.ascii_lowercase + string.digits, k=8))
        extra = " ".join(rng.sample(pool, 6))
        keys.append(str(p["product_id"]))
        texts.append(f"{p['title']}. {p['description']} {serial} {extra}")
    groups: dict[int, list[str]] = {}
    while n_copies > 0:
        base = rng.randrange(n_base)
        if base in groups:
            continue
        k = min(n_copies, 2 if rng.random() < 0.2 else 1)
        groups[base] = [keys[base]]
        for c in range(k):
            key = f"{keys[base]}-dup{c}"
            keys.append(key)
            texts.append(_mutate(rng, texts[base], rng.choice(["typo", "reorder", "case", "mixed"])))
            groups[base].append(key)
        n_copies -= k
    truth = {tuple(sorted(p)) for g in groups.values() for p in combinations(g, 2)}
    order = list(range(len(keys)))
    rng.shuffle(order)
    return [keys[i] for i in order], [texts[i] for i in order], truth


def score(result, truth: set[tuple[str, str]]) -> tuple[float, float, int]:
    """Precision over the pairs listed; recall over the truth pairs whose keys share a cluster
    (a pair inside a cluster that is already connected is not verified, so not listed)."""
    found = {tuple(sorted(p)) for p in zip(result.pairs["key_a"], result.pairs["key_b"], strict=True)}
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    cluster_of = {k: c for c, keys in enumerate(result.clusters) for k in keys}
    joined = sum(1 for a, b in truth if a in cluster_of and cluster_of[a] == cluster_of.get(b))
    recall = joined / len(truth) if truth else 1.0
    return precision, recall, len(found - truth)


def main() -> None:
    seconds, rows = {}, []
    precision = recall = None
    for n in SIZES:
        keys, texts, truth = make_corpus(n)
        t0 = time.perf_counter()
        result = find_near_duplicates(keys, texts, threshold=THRESHOLD, num_perm=NUM_PERM)
        dt = time.perf_counter() - t0
        p, r, fp = score(result, truth)
        seconds[str(n)] = round(dt, 2)
        rows.append((n, dt, len(truth), len(result.pairs), fp, p, r))
        precision, recall = p, r  # the largest size is reported
    google = pd.read_csv(GOOGLE, encoding="cp1252")
    gtexts = (google["name"].fillna("") + " " + google["description"].fillna("")).tolist()
    t0 = time.perf_counter()
    gres = find_near_duplicates(google["id"].astype(str).tolist(), gtexts, threshold=THRESHOLD,
                                num_perm=NUM_PERM)
    gdt = time.perf_counter() - t0

    print(f"threshold={THRESHOLD} num_perm={NUM_PERM} planted rate={PLANT_RATE:.0%}")
    print(f"{'n':>8} {'seconds':>8} {'s/10k':>6} {'truth':>6} {'found':>6} {'FP':>4} "
          f"{'precision':>9} {'recall':>7}")
    for n, dt, t, f, fp, p, r in rows:
        print(f"{n:>8} {dt:>8.2f} {dt / n * 1e4:>6.2f} {t:>6} {f:>6} {fp:>4} {p:>9.4f} {r:>7.4f}")
    print(f"GoogleProducts.csv: {len(google)} rows, {len(gres.pairs)} near-duplicate pairs in "
          f"{len(gres.clusters)} clusters (largest {len(gres.clusters[0]) if gres.clusters else 0}), "
          f"{gdt:.2f}s")
    for a, b, s in gres.pairs.head(3).itertuples(index=False, name=None):
        ta = gtexts[google.index[google["id"] == a][0]][:70]
        tb = gtexts[google.index[google["id"] == b][0]][:70]
        print(f"  {s:.3f}  {ta!r}\n         {tb!r}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "seconds": seconds,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "google_pairs": int(len(gres.pairs)),
        "google_clusters": len(gres.clusters),
        "google_seconds": round(gdt, 2),
        "threshold": THRESHOLD,
        "num_perm": NUM_PERM,
        "plant_rate": PLANT_RATE,
        "by_size": [{"n": n, "seconds": round(dt, 2), "truth_pairs": t, "found_pairs": f,
                     "false_positives": fp, "precision": round(p, 4), "recall": round(r, 4)}
                    for n, dt, t, f, fp, p, r in rows],
    }, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
