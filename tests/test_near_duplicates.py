"""Near-duplicate detection: planted duplicates are found, distinct texts are not, clusters are
connected components, and the quality check passes or fails on the duplicate rate."""

from __future__ import annotations

import random
import string
import time
import tracemalloc
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from jammi.demo.generate import make_products
from jammi.quality import near_duplicates as nd
from jammi.quality.frame_gate import NEAR_DUPLICATES, check_names, frame_checks
from jammi.quality.group_links import TopPairs
from jammi.quality.near_duplicates import (
    MAX_PAIRS,
    find_near_duplicates,
    near_duplicate_check,
    normalise,
    shingles,
)
from tests.conftest import PRODUCT_COLUMNS, write_project


def _words(rng: random.Random, k: int) -> list[str]:
    return ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 9))) for _ in range(k)]


def _distinct_texts(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(_words(rng, 25)).capitalize() + "." for _ in range(n)]


def _jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def _pair_set(result) -> set[frozenset]:
    return {frozenset(p) for p in zip(result.pairs["key_a"], result.pairs["key_b"], strict=True)}


BASE = ("Kestrel Compact Two-Person Tent in Recycled Nylon. A compact two-person tent made from "
        "recycled nylon, designed for weekend trips. Comes with a carrying case and a lifetime warranty.")


def test_normalise_folds_case_unicode_punctuation_and_space():
    assert normalise("  ＡＣＭＥ   Kettle!!  (2-pack) ") == "acme kettle 2 pack"
    assert normalise(None) == ""
    assert normalise("?!") == ""


@pytest.mark.parametrize("variant", [
    BASE.replace("compact two-person", "compcat two-person", 1),  # typo: swapped letters
    BASE.replace("weekend", "weekedn").replace("nylon,", "nylob,"),  # two edits
    " ".join(reversed(BASE.split())),  # reordered words
    BASE.upper(),  # changed case
    BASE.replace(".", " ").replace(",", " ; "),  # punctuation / whitespace only
])


def test_planted_near_duplicate_is_found_with_its_keys(variant):
    texts = _distinct_texts(40) + [BASE, variant]
    keys = [f"k{i}" for i in range(40)] + ["orig", "copy"]
    result = find_near_duplicates(keys, texts)
    assert _pair_set(result) == {frozenset({"orig", "copy"})}
    assert result.clusters == [["orig", "copy"]]
    assert result.pairs["similarity"].iloc[0] >= 0.8


def test_similarity_is_the_exact_jaccard_of_the_shingle_sets():
    variant = BASE.replace("weekend", "weekedn")
    result = find_near_duplicates(["a", "b"], [BASE, variant])
    assert result.pairs["similarity"].iloc[0] == pytest.approx(_jaccard(BASE, variant), abs=1e-6)
    assert list(result.pairs.columns) == ["key_a", "key_b", "similarity"]


def test_exact_duplicates_after_normalisation_have_similarity_one():
    result = find_near_duplicates(["a", "b", "c"], ["Hello, World  again", "hello world AGAIN", "other text"])
    assert _pair_set(result) == {frozenset({"a", "b"})}
    assert result.pairs["similarity"].tolist() == [1.0]


def test_distinct_texts_are_not_paired():
    texts = _distinct_texts(300)
    result = find_near_duplicates([str(i) for i in range(300)], texts)
    assert result.pairs.empty
    assert result.clusters == []


def test_templated_but_different_products_are_not_paired():
    other = BASE.replace("Kestrel", "Acme").replace("Recycled Nylon", "Bamboo").replace(
        "recycled nylon", "bamboo").replace("weekend trips", "beginners")
    assert _jaccard(BASE, other) < 0.8
    assert find_near_duplicates(["a", "b"], [BASE, other]).pairs.empty


def test_clusters_are_connected_components():
    rng = random.Random(11)
    words = _words(rng, 30)
    a = list(words)
    b = list(words)
    b[0:2] = _words(rng, 2)
    c = list(b)
    c[10:12] = _words(rng, 2)
    a, b, c = " ".join(a), " ".join(b), " ".join(c)
    # precondition: a-b and b-c are near-duplicates, a-c is not
    assert _jaccard(a, b) >= 0.8 and _jaccard(b, c) >= 0.8 and _jaccard(a, c) < 0.8
    texts = _distinct_texts(20) + [a, b, c, "x y z", "x y z"]
    keys = [f"k{i}" for i in range(20)] + ["a", "b", "c", "p", "q"]
    result = find_near_duplicates(keys, texts)
    assert _pair_set(result) == {frozenset({"a", "b"}), frozenset({"b", "c"}), frozenset({"p", "q"})}
    assert [sorted(c) for c in result.clusters] == [["a", "b", "c"], ["p", "q"]]  # largest first


def test_null_and_empty_texts_are_ignored():
    result = find_near_duplicates(["a", "b", "c", "d", "e"], [None, "", "  ", "!!", BASE])
    assert result.pairs.empty and result.clusters == [] and result.n_texts == 1


@pytest.mark.parametrize("keys, texts", [
    ([], []), (["a", "b", "c"], [None, None, None]), (["a", "b"], ["", " "]),
])


def test_empty_or_all_null_input_passes_with_zero_statistic(keys, texts):
    outcome = near_duplicate_check(keys, texts)
    assert outcome.passed is True
    assert outcome.statistic == 0.0
    assert outcome.name == "near_duplicates"
    assert "empty" in outcome.description
    assert outcome.examples == []


def test_check_fails_when_planted_rate_exceeds_max_rate_and_passes_below():
    base = _distinct_texts(100, seed=5)
    keys = [f"k{i}" for i in range(100)]
    dup_texts = base + [t.upper() for t in base[:3]]  # 6 of 103 rows in clusters
    dup_keys = keys + [f"d{i}" for i in range(3)]
    failed = near_duplicate_check(dup_keys, dup_texts, max_rate=0.05, severity="error")
    assert failed.passed is False
    assert failed.severity == "error"
    assert failed.statistic == pytest.approx(6 / 103)
    assert failed.threshold == 0.05
    assert failed.details["pairs"] == 3 and failed.details["clusters"] == 3
    assert failed.details["largest_cluster"] == 2
    assert {frozenset((e["a"], e["b"])) for e in failed.examples} == {
        frozenset({f"k{i}", f"d{i}"}) for i in range(3)}

    assert near_duplicate_check(dup_keys, dup_texts, max_rate=0.10).passed is True
    one = near_duplicate_check(keys + ["d0"], base + [base[0].lower()], max_rate=0.05)
    assert one.passed is True and one.statistic == pytest.approx(2 / 101)
    clean = near_duplicate_check(keys, base)
    assert clean.passed is True and clean.statistic == 0.0 and clean.details["pairs"] == 0


def test_examples_are_capped_at_ten_and_cluster_examples_truncated():
    base = _distinct_texts(30, seed=9)
    texts = base + [t.swapcase() for t in base] + [base[0]] * 12
    keys = [f"k{i}" for i in range(len(texts))]
    outcome = near_duplicate_check(keys, texts)
    assert outcome.passed is False
    assert len(outcome.examples) == 10
    assert all(set(e) == {"a", "b", "similarity"} for e in outcome.examples)
    assert outcome.details["clusters"] == 30
    assert outcome.details["largest_cluster"] == 14
    assert len(outcome.details["cluster_examples"]) == 5
    assert len(outcome.details["cluster_examples"][0]) == 10
    assert outcome.details["pairs"] == 29 + 14 * 13 // 2


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        find_near_duplicates(["a"], ["x", "y"])


def _templated(n: int, seed: int = 7) -> list[str]:
    """Demo product texts: one template, a few attribute words apart."""
    return [f"{p['title']}. {p['description']}" for p in make_products(n, seed=seed, dirty=False)]


def _brute_force_clusters(keys: list[str], texts: list[str], threshold: float = 0.8) -> list[set]:
    sets = [shingles(t) for t in texts]
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for i, j in combinations(range(len(texts)), 2):
        if len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= threshold:
            parent[find(i)] = find(j)
    comps: dict[int, set] = {}
    for i in range(len(texts)):
        comps.setdefault(find(i), set()).add(keys[i])
    return sorted((c for c in comps.values() if len(c) > 1), key=lambda c: (-len(c), sorted(c)))


@pytest.mark.slow
def test_clusters_of_templated_texts_match_all_pairs_compared():
    texts = _templated(500, seed=3)
    texts += [t.upper() for t in texts[:20]]
    grown = [f"{t} zzextra qqbonus" for t in texts[20:40]]  # chains: t ~ grown ~ longer, t !~ longer
    texts += grown + [f"{t} wwmore xxplus yyfinal" for t in grown]
    keys = [f"k{i}" for i in range(len(texts))]
    truth = _brute_force_clusters(keys, texts)
    assert len(truth) > 40 and len(truth[0]) == 3  # precondition: chains of three
    assert _jaccard(texts[20], texts[540]) < 0.8 <= min(_jaccard(texts[20], texts[520]),
                                                         _jaccard(texts[520], texts[540]))
    result = find_near_duplicates(keys, texts)
    assert sorted(map(set, result.clusters), key=lambda c: (-len(c), sorted(c))) == truth
    assert [len(c) for c in result.clusters] == sorted((len(c) for c in truth), reverse=True)
    assert result.extra["rows_capped"] == 0


@pytest.mark.slow
def test_identical_and_templated_texts_stay_bounded():
    n = 20_000
    same = " ".join(_words(random.Random(1), 30))  # unlike every template
    texts = [same] * n + _templated(n)
    keys = [f"s{i}" for i in range(n)] + [f"t{i}" for i in range(n)]
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        result = find_near_duplicates(keys, texts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 500 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert time.perf_counter() - t0 < 120
    # the identical texts are one cluster, joined by no templated text
    assert result.clusters[0] == keys[:n]
    assert all(k.startswith("t") for c in result.clusters[1:] for k in c)
    assert 0 < sum(len(c) for c in result.clusters[1:]) < n
    # pairs: the most similar kept, all counted
    assert len(result.pairs) == MAX_PAIRS
    assert (result.pairs["similarity"] == 1.0).all()
    assert result.pairs.iloc[0].tolist() == ["s0", "s1", 1.0]
    assert result.extra["pairs_total"] > n * (n - 1) // 2
    for cluster in result.clusters[1:30]:  # templated clusters hold real near-duplicates
        cluster_texts = [texts[int(k[1:]) + n] for k in cluster]
        assert max(_jaccard(cluster_texts[0], t) for t in cluster_texts[1:]) >= 0.8


def test_check_counts_every_pair_and_rates_clusters(monkeypatch):
    monkeypatch.setattr(nd, "MAX_PAIRS", 4)
    texts = [BASE] * 6 + [BASE.replace("weekend", "weekedn")] * 2 + _distinct_texts(12)
    keys = [f"r{i}" for i in range(len(texts))]
    outcome = near_duplicate_check(keys, texts)
    assert outcome.details["pairs"] == 15 + 1 + 6 * 2  # C(6,2) + C(2,2) + 6 x 2 across
    assert len(outcome.examples) == 4
    assert outcome.statistic == pytest.approx(8 / 20)
    assert outcome.details["clusters"] == 1 and outcome.details["largest_cluster"] == 8


def test_rows_over_the_candidate_cap_are_counted(monkeypatch):
    monkeypatch.setattr(nd, "MAX_CANDIDATES", 3)
    variants = [f"{BASE} zq{c}x" for c in "abcdefghij"]  # 10 distinct texts, Jaccard ~0.9 each
    texts = [*variants, variants[0]]  # the first text twice: its two rows both hit the cap
    keys = [f"v{i}" for i in range(len(texts))]
    outcome = near_duplicate_check(keys, texts)
    # text i has 9 - i later candidates: texts 0..5 (7 rows) have more than 3
    assert outcome.details["rows_capped"] == 7
    assert outcome.details["max_candidates"] == 3
    assert "7 rows had more than 3 LSH candidates" in outcome.description
    assert outcome.details["clusters"] == 1 and outcome.details["largest_cluster"] == 11
    assert outcome.statistic == 1.0
    assert near_duplicate_check(keys[:4], texts[:4]).details["rows_capped"] == 0


def test_pairs_kept_are_the_first_of_all_pairs_in_order(monkeypatch):
    x = BASE
    y = BASE.replace("weekend", "weekedn")
    texts = [x, y, x.upper(), y.lower(), x, "unrelated words here", y]
    keys = [f"r{i}" for i in range(len(texts))]
    sim = _jaccard(x, y)
    rows_x, rows_y = [0, 2, 4], [1, 3, 6]
    every = sorted([(-1.0, a, b) for a, b in combinations(rows_x, 2)]
                   + [(-1.0, a, b) for a, b in combinations(rows_y, 2)]
                   + [(-sim, min(a, b), max(a, b)) for a in rows_x for b in rows_y])
    for limit in (1, 4, 6, 8, 100):
        monkeypatch.setattr(nd, "MAX_PAIRS", limit)
        result = find_near_duplicates(keys, texts)
        expect = [(f"r{a}", f"r{b}", round(-s, 6)) for s, a, b in every[:limit]]
        assert list(result.pairs.itertuples(index=False, name=None)) == expect
        assert result.extra["pairs_total"] == len(every) == 15


def test_top_pairs_keeps_the_most_similar_of_many_offered():
    top = TopPairs(limit=5)
    for g in range(30):
        top.add_edge(np.array([g]), np.array([100 + g]), 0.8 + g / 200)
    sims, a, b = top.arrays()
    assert sims.tolist() == pytest.approx([0.8 + g / 200 for g in (29, 28, 27, 26, 25)])
    assert a.tolist() == [29, 28, 27, 26, 25] and b.tolist() == [129, 128, 127, 126, 125]
    top.add_group(np.arange(200, 1200))  # 499,500 pairs offered, 5 built
    sims, a, b = top.arrays()
    assert sims.tolist() == [1.0] * 5
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [(200, 201), (200, 202), (200, 203),
                                                              (200, 204), (200, 205)]


def _project(tmp_path, near: dict):
    src = {"kind": "csv", "path": "data/products.csv", "key": "id", "columns": PRODUCT_COLUMNS,
           "quality": {"near_duplicates": near}}
    return write_project(tmp_path, {"products": src},
                         {"products": {"source": "products", "text_columns": ["title", "body"]}})


def test_a_disabled_check_is_neither_run_nor_declared(tmp_path):
    valid = pd.DataFrame({"id": [1, 2, 3], "title": ["Kettle", "kettle", "Lamp"],
                          "body": ["Steel kettle", "steel kettle", "Desk lamp"], "price": [1.0, 2.0, 3.0]})
    on = _project(tmp_path / "on", {"max_rate": 0.1})
    off = _project(tmp_path / "off", {"enabled": False, "max_rate": 0.1})
    assert NEAR_DUPLICATES in check_names(on.sources["products"])
    assert NEAR_DUPLICATES not in check_names(off.sources["products"])
    ran = {o.name: o for o in frame_checks(on, "products", valid, valid.iloc[:0], None, {})}
    assert ran[NEAR_DUPLICATES].passed is False  # 2 of 3 rows are duplicates
    names = [o.name for o in frame_checks(off, "products", valid, valid.iloc[:0], None, {})]
    assert NEAR_DUPLICATES not in names
    assert names == [n for n in check_names(off.sources["products"])]
