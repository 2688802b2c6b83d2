"""Near-duplicate detection: planted duplicates are found, distinct texts are not, clusters are
connected components, and the quality check passes or fails on the duplicate rate."""

from __future__ import annotations

import random
import string

import pytest

from jammi.quality.near_duplicates import (
    find_near_duplicates,
    near_duplicate_check,
    normalise,
    shingles,
)


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
