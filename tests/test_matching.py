"""The record-linkage matcher: blocking, comparators, threshold rule, one-to-one assignment."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from jammi.fusion.blocking import codes, embedding_candidates, token_candidates
from jammi.fusion.clusters import cluster
from jammi.fusion.matching import (
    assign,
    duplicate_threshold,
    eligible,
    match,
    mutual_best,
    twin_candidates,
)
from jammi.fusion.scoring import Prepared, field_similarity
from jammi.fusion.threshold import FALLBACK_THRESHOLD, fit_split, mixture_threshold, otsu_threshold
from jammi.spec.entities import EntitySpec

MODEL = "sentence-transformers/all-MiniLM-L6-v2"

PRODUCT = EntitySpec.model_validate({
    "fields": {"name": "str", "model": "str", "manufacturer": "str", "price": "float"},
    "sources": {"shop": {"mapping": {"name": "name"}}, "web": {"mapping": {"name": "name"}}},
    "matching": {"fields": {"name": "text", "model": "code", "manufacturer": "text", "price": "number"},
                 "embed": ["name", "manufacturer"], "candidates": 4},
})

LEFT = pd.DataFrame({
    "_source": "shop",
    "_record_id": ["a1", "a2", "a3", "a4", "a5"],
    "name": ["Adobe Photoshop Elements 5.0", "Norton AntiVirus 2007", "Canon PowerShot SD800IS camera",
             "Microsoft Office Home and Student 2007", "Hoyle Board Games"],
    "manufacturer": ["adobe", "symantec", "canon", "microsoft", "encore"],
    "price": [89.99, 39.99, 299.0, 149.95, 9.99],
})
LEFT["model"] = LEFT["name"]
RIGHT = pd.DataFrame({
    "_source": "web",
    "_record_id": ["b1", "b2", "b3", "b4", "b5", "b6"],
    "name": ["symantec norton antivirus 2007 windows", "photoshop elements 5 by adobe",
             "PowerShot SD-800IS digital camera (canon)", "microsoft office home & student 2007",
             "microsoft office home & student 2003", "garden planner deluxe"],
    "manufacturer": [None, None, "Canon", None, None, None],
    "price": [41.5, 84.0, 289.0, 139.0, 99.0, 19.0],
})
RIGHT["model"] = RIGHT["name"]
TRUE_PAIRS = {("a1", "b2"), ("a2", "b1"), ("a3", "b3"), ("a4", "b4")}


def _texts(frame: pd.DataFrame) -> list[str]:
    return (frame["name"].fillna("") + " " + frame["manufacturer"].fillna("")).str.strip().tolist()


@pytest.fixture(scope="module")
def encode():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from jammi.embedding.model import load_encoder

    return load_encoder(MODEL).encode


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Canon PowerShot SD-800IS", {"sd800is"}),
        ("apple mb-344LL/A ipod", {"mb344lla"}),
        ("version v2.1 of office 2007", {"v21"}),
        ("office 2007 premier edition", set()),  # digits alone or letters alone are not codes
        ("x1 is too short", set()),
        (None, set()),
    ],
)


def test_codes_are_mixed_letter_digit_tokens(text, expected):
    assert codes(text) == expected


def test_code_comparator_shared_disjoint_and_missing():
    comparators = {"model": "code"}
    left = Prepared(pd.DataFrame({"model": ["dw-2000 drill", "dw2000", "plain drill"]}), comparators)
    right = Prepared(pd.DataFrame({"model": ["DW2000", "DW2001"]}), comparators)
    li, ri = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0])
    sim = field_similarity("code", left, right, "model", li, ri)
    assert sim[0] == 1.0 and sim[1] == 0.0 and sim[2] == 0.0
    assert np.isnan(sim[3])  # one side has no code: no evidence either way


def test_code_comparator_reads_a_model_number_column_and_the_records_text():
    comparators = {"title": "text", "model": "code"}
    left = Prepared(pd.DataFrame({"title": ["hp 80 printhead black", "koss headphones"],
                                  "model": ["c4890a", "121066"]}), comparators)
    right = Prepared(pd.DataFrame({"title": ["hp c4893a printhead yellow", "koss stereo 121066",
                                             "hp 80 printhead c4890a", "koss stereo"],
                                   "model": [None, None, None, "121-066"]}), comparators)
    sim = field_similarity("code", left, right, "model", np.array([0, 1, 0, 1]), np.array([0, 1, 2, 3]))
    # codes in the record's title count; a one-token model number counts whole, separators
    # dropped; digits inside free text are not a code (no evidence)
    assert sim[0] == 0.0 and np.isnan(sim[1]) and sim[2] == 1.0 and sim[3] == 1.0


def test_exact_comparator_ignores_case_spaces_and_punctuation():
    left = Prepared(pd.DataFrame({"phone": ["310/246-1501", "212 555 0100", None]}), {"phone": "exact"})
    right = Prepared(pd.DataFrame({"phone": ["310-246-1501", "212-555-0199", "1"]}), {"phone": "exact"})
    idx = np.array([0, 1, 2])
    sim = field_similarity("exact", left, right, "phone", idx, idx)
    assert sim[0] == 1.0 and sim[1] == 0.0 and np.isnan(sim[2])


def test_number_year_and_name_comparators():
    left = Prepared(pd.DataFrame({"p": [100.0, 0.0, None], "y": [1999, 2001, None],
                                  "a": ["Gottfried Vossen, Mathias Weske", "A. Smith", None]}),
                    {"p": "number", "y": "year", "a": "name"})
    right = Prepared(pd.DataFrame({"p": [80.0, 50.0, 5.0], "y": [1999, 2002, 1999],
                                   "a": ["M. Weske and G. Vossen", "Bo Li", "X"]}),
                     {"p": "number", "y": "year", "a": "name"})
    idx = np.array([0, 1, 2])
    price = field_similarity("number", left, right, "p", idx, idx)
    assert price[0] == pytest.approx(0.8) and np.isnan(price[1]) and np.isnan(price[2])  # 0 = unknown
    year = field_similarity("year", left, right, "y", idx, idx)
    assert year[0] == 1.0 and year[1] == 0.0 and np.isnan(year[2])
    names = field_similarity("name", left, right, "a", idx, idx)
    assert names[0] == 1.0 and names[1] < 0.5 and np.isnan(names[2])  # surnames, any order


def test_text_comparator_penalises_clashing_numbers():
    comparators = {"name": "text"}
    left = Prepared(pd.DataFrame({"name": ["office home student 2007"]}), comparators)
    right = Prepared(pd.DataFrame({"name": ["office home student 2007", "office home student 2003"]}),
                     comparators)
    sim = field_similarity("text", left, right, "name", np.array([0, 0]), np.array([0, 1]))
    assert sim[0] == pytest.approx(1.0)
    assert sim[1] < 0.8


def test_token_blocking_pairs_records_sharing_a_rare_code():
    left = [{"acme", "drill", "dw2000"}, {"acme", "saw"}]
    right = [{"drill", "cordless", "dw2000"}, {"acme", "hammer"}, {"acme", "saw", "x"}]
    pairs = {tuple(p) for p in token_candidates(left, right, max_df=3).tolist()}
    assert (0, 0) in pairs  # shares the rare code dw2000
    assert (1, 2) in pairs  # shares "saw"
    assert (0, 1) not in pairs  # only "acme", which 4 records hold: not rare


@pytest.mark.slow
def test_embedding_blocking_finds_the_true_pairs(encode):
    lv, rv = encode(_texts(LEFT)), encode(_texts(RIGHT))
    pairs = {(LEFT["_record_id"][a], RIGHT["_record_id"][b]) for a, b in embedding_candidates(lv, rv, 1)}
    assert TRUE_PAIRS <= pairs


def test_otsu_threshold_splits_a_bimodal_set():
    rng = np.random.default_rng(0)
    low = np.clip(rng.normal(0.35, 0.05, 300), 0, 1)
    high = np.clip(rng.normal(0.9, 0.03, 200), 0, 1)
    threshold, rule = otsu_threshold(np.concatenate([low, high]))
    assert 0.5 < threshold < 0.8
    assert (low < threshold).mean() > 0.99 and (high >= threshold).mean() > 0.99
    assert rule.startswith("otsu")


def test_otsu_threshold_falls_back_without_two_modes():
    assert otsu_threshold(np.full(50, 0.7))[0] == FALLBACK_THRESHOLD
    assert otsu_threshold(np.array([0.2, 0.9]))[0] == FALLBACK_THRESHOLD  # too few records


def test_mixture_threshold_weighs_a_small_high_mode_by_its_share():
    rng = np.random.default_rng(1)
    low = np.clip(rng.normal(0.45, 0.08, 2000), 0, 1)  # many records with no partner
    high = np.clip(rng.normal(0.8, 0.06, 150), 0, 1)
    scores = np.concatenate([low, high])
    threshold, rule, split = mixture_threshold(scores)
    assert rule.startswith("mixture") and split is not None
    assert split.low[0] == pytest.approx(0.45, abs=0.02) and split.high[0] == pytest.approx(0.8, abs=0.03)
    assert split.share == pytest.approx(150 / 2150, abs=0.02)
    assert 0.6 < threshold < 0.72
    assert split.posterior(threshold) == pytest.approx(0.5, abs=0.01)
    assert split.crossing(0.05) < threshold  # the mutual-best bar sits below it
    assert mixture_threshold(np.full(50, 0.7))[0] == FALLBACK_THRESHOLD
    assert fit_split(np.array([0.2, 0.9])) is None  # too few records


def test_mutual_best_pairs_are_each_sides_best():
    left, right = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    score = np.array([0.9, 0.5, 0.8, 0.4])  # right 0 is best for both lefts; right 1 is best for left 0
    assert mutual_best(left, right, score).tolist() == [True, False, False, False]


def test_mutual_best_pairs_under_the_threshold_are_eligible_above_the_bar():
    left, right = np.array([0, 0, 1, 2, 3]), np.array([0, 1, 1, 2, 3])
    score = np.array([0.9, 0.65, 0.7, 0.6, 0.45])
    # (0,0) passes the threshold; (0,1) is nobody's best; (1,1) and (2,2) are mutual best above
    # the bar; (3,3) is mutual best but under it
    assert eligible(left, right, score, 0.8, 0.5).tolist() == [True, False, True, True, False]
    assert eligible(left, right, score, 0.8, 0.8).tolist() == [True, False, False, False, False]


@pytest.mark.slow
def test_a_mutual_best_pair_below_the_threshold_links_unless_the_scores_contradict_it(encode):
    lv, rv = encode(_texts(LEFT)), encode(_texts(RIGHT))
    found = match(LEFT, RIGHT, lv, rv, PRODUCT)
    assert "mutual best pairs from" in found.threshold_rule
    off = PRODUCT.model_copy(update={"matching": PRODUCT.matching.model_copy(update={"mutual_best": False})})
    plain = match(LEFT, RIGHT, lv, rv, off)
    assert set(map(tuple, plain.links[["left", "right"]].to_numpy())) <= set(
        map(tuple, found.links[["left", "right"]].to_numpy()))
    mutual = found.links[found.links["rule"].str.startswith("match:mutual best")]
    assert (mutual["score"] < found.threshold).all()


def test_assignment_is_one_to_one_and_greedy_by_score():
    left = np.array([0, 0, 1, 1, 2])
    right = np.array([0, 1, 0, 1, 1])
    score = np.array([0.95, 0.9, 0.92, 0.6, 0.85])
    chosen = assign(left, right, score, threshold=0.5)
    assert sorted(zip(left[chosen].tolist(), right[chosen].tolist(), strict=True)) == [(0, 0), (2, 1)]
    assert assign(left, right, score, threshold=0.99).size == 0


@pytest.mark.slow
def test_match_links_the_true_pairs_one_to_one(encode):
    lv, rv = encode(_texts(LEFT)), encode(_texts(RIGHT))
    found = match(LEFT, RIGHT, lv, rv, PRODUCT)
    links = {(LEFT["_record_id"][a], RIGHT["_record_id"][b]) for a, b in zip(
        found.links["left"], found.links["right"], strict=True)}
    assert links == TRUE_PAIRS  # not "office 2003", not the garden planner, not hoyle
    assert found.links["left"].is_unique and found.links["right"].is_unique
    assert found.links["score"].between(found.threshold, 1).all()
    assert found.links["rule"].str.startswith("match:score>=").all()
    assert "model 1.00" in found.links.loc[found.links["left"] == 2, "evidence"].item()
    candidate_pairs = set(zip(found.candidates["left"], found.candidates["right"], strict=True))
    assert set(zip(found.links["left"], found.links["right"], strict=True)) <= candidate_pairs
    assert len(found.candidates) <= PRODUCT.matching.candidates * (len(LEFT) + len(RIGHT))


@pytest.mark.slow
def test_match_reads_no_labels_and_honours_a_configured_threshold(encode):
    lv, rv = encode(_texts(LEFT)), encode(_texts(RIGHT))
    plain = match(LEFT, RIGHT, lv, rv, PRODUCT)
    # a label column next to the fields changes nothing: only declared fields are read
    labelled = LEFT.assign(is_match=[True, False, True, False, True], gold_id=["x"] * 5)
    again = match(labelled, RIGHT.assign(is_match=False), lv, rv, PRODUCT)
    pd.testing.assert_frame_equal(plain.links, again.links)
    assert plain.threshold == again.threshold
    strict = PRODUCT.model_copy(update={"matching": PRODUCT.matching.model_copy(update={"threshold": 0.99})})
    assert match(LEFT, RIGHT, lv, rv, strict).links.empty


def test_text_field_null_on_one_side_counts_the_key_word_found_elsewhere():
    comparators = {"name": "text", "manufacturer": "text"}
    left = Prepared(pd.DataFrame({"name": ["hoyle mahjongg", "hoyle mahjongg", "jaws"],
                                  "manufacturer": ["Encore Software", "Riverdeep Software", None]}),
                    comparators)
    right = Prepared(pd.DataFrame({"name": ["encore software 10023 - hoyle mahjongg", "jaws unleashed",
                                            "magix software"],
                                   "manufacturer": [None, None, "Encore"]}), comparators)
    li, ri = np.array([0, 1, 2, 0]), np.array([0, 0, 1, 2])
    sim = field_similarity("text", left, right, "manufacturer", li, ri)
    # "encore" (held by 2 of the 3 distinct values, "software" by 2, ties alphabetical) is in the name
    assert sim[0] == 1.0
    assert np.isnan(sim[1])  # "riverdeep" is nowhere in the other record: no evidence, not 0
    assert np.isnan(sim[2])  # both sides null
    assert 0.5 < sim[3] < 1.0  # both present: the ordinary comparison ("encore" vs "encore software")


def test_twin_candidates_are_unlinked_records_whose_best_partner_holds_their_twin():
    # left 0 is linked to right 0; right 1 (best candidate: left 0) is unlinked -> twin of right 0
    left = np.array([0, 0, 1, 1])
    right = np.array([0, 1, 1, 2])
    score = np.array([0.95, 0.9, 0.7, 0.5])
    chosen = assign(left, right, score, threshold=0.6)
    assert sorted(zip(left[chosen].tolist(), right[chosen].tolist(), strict=True)) == [(0, 0), (1, 1)]
    # right 1 is linked (to left 1), right 2 scores under the threshold: no twin candidates
    assert twin_candidates(left, right, score, chosen, 0.6) == []
    score = np.array([0.95, 0.9, 0.5, 0.5])  # now left 1 has no partner above 0.6
    chosen = assign(left, right, score, threshold=0.6)
    assert twin_candidates(left, right, score, chosen, 0.6) == [(1, 0, "r")]
    assert duplicate_threshold(0.6) == 0.8


@pytest.mark.slow
def test_a_record_links_to_its_partner_and_the_partners_twin(encode):
    left = pd.DataFrame({"_source": "shop", "_record_id": ["s1", "s2"],
                         "name": ["adobe soundbooth cs3", "garden planner deluxe 3"],
                         "manufacturer": ["adobe", "artifact"], "price": [199.0, 29.0]})
    right = pd.DataFrame({"_source": "web", "_record_id": ["w1", "w2", "w3"],
                          "name": ["adobe soundbooth cs3 windows", "adobe soundbooth cs3 mac",
                                   "adobe audition 3"],
                          "manufacturer": [None, None, None], "price": [205.0, 205.0, 349.0]})
    for frame in (left, right):
        frame["model"] = frame["name"]
    spec = PRODUCT.model_copy(update={"matching": PRODUCT.matching.model_copy(
        update={"threshold": 0.7, "duplicates": True})})
    found = match(left, right, encode(_texts(left)), encode(_texts(right)), spec)
    pairs = {(left["_record_id"][a], right["_record_id"][b]): rule for a, b, rule in zip(
        found.links["left"], found.links["right"], found.links["rule"], strict=True)}
    assert set(pairs) == {("s1", "w1"), ("s1", "w2")}
    twin = [rule for rule in pairs.values() if rule.startswith("match:duplicate")]
    assert len(twin) == 1 and "twin" in twin[0]
    off = spec.model_copy(update={"matching": spec.matching.model_copy(update={"duplicates": False})})
    strict = match(left, right, encode(_texts(left)), encode(_texts(right)), off)
    assert len(strict.links) == 1 and strict.links["left"].is_unique

    # clustering keeps both twins in one entity with their shared partner
    sources = ["shop", "shop", "web", "web", "web"]
    links = found.links.assign(right=found.links["right"] + 2)[["left", "right", "score", "rule"]]
    labels, out = cluster(sources, links)
    assert labels[0] == labels[2] == labels[3] and out["accepted"].all()


def test_a_duplicate_link_adds_one_record_but_never_merges_two_entities():
    sources = ["a", "b", "b", "a", "b", "c", "b"]
    links = pd.DataFrame({
        "left": [0, 3, 5, 0, 0, 0],
        "right": [1, 4, 6, 2, 4, 6],
        "score": [0.95, 0.9, 0.9, 0.8, 0.79, 0.78],
        "rule": ["match:score>=0.6"] * 3 + ["match:duplicate of b1"] * 3,
    })
    labels, out = cluster(sources, links)
    # record 2 joins entity {0, 1}; {3, 4} and {5, 6} stay apart
    assert labels.tolist() == [0, 0, 0, 3, 3, 5, 5]
    assert out["accepted"].tolist() == [True, True, True, True, False, False]
    assert "same source" in out["refused_because"].iloc[4]  # would join two a's and two b's
    assert "not bring a cluster" in out["refused_because"].iloc[5]  # shares only b, but brings c
