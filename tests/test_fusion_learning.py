"""Fusion that learns: Fellegi-Sunter weights fitted by EM (an uninformative field gets little
weight), labels stored in the catalog and used on the next run (a yes always links, a no
never, the weights and threshold refit), the review queue, labels from CSV, the review
command and the labelled-pairs check."""

from __future__ import annotations

import zlib
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from jammi.app.fusion import fuse_and_check
from jammi.app.fusion_review import list_labels, load_labels, record_answer, review_pairs
from jammi.errors import FusionError
from jammi.fusion.fuse import fuse_entity
from jammi.fusion.labels import labels_frame, least_sure_order, read_labels_csv, review_queue
from jammi.fusion.weights import LEVELS, calibrate, fit_em, fit_mean, to_levels
from jammi.quality.fused_checks import LABELS
from jammi.spec.project import load_project
from jammi.tables.catalog import Catalog
from tests.conftest import invoke_cli


def test_levels_cut_similarities_and_keep_nulls_apart():
    sims = np.array([np.nan, 0.2, 0.5, 0.96, 1.0])
    assert to_levels("text", sims).tolist() == [-1, 0, 1, 4, 4]
    assert to_levels("code", np.array([0.0, 1.0, np.nan])).tolist() == [0, 1, -1]
    assert len(LEVELS["cos"]) == 6


def synthetic_levels(n: int = 20_000, share: float = 0.05, seed: int = 3):
    """Pairs whose `name`, `maker` and `code` tell matches apart (each independently, given the
    truth) and whose `noise` does not."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < share

    def informative(match_p, other_p):
        return np.where(truth, rng.choice(len(match_p), n, p=match_p), rng.choice(len(other_p), n, p=other_p))

    name = informative([0.02, 0.03, 0.1, 0.25, 0.6], [0.5, 0.3, 0.12, 0.06, 0.02])
    maker = informative([0.05, 0.05, 0.1, 0.2, 0.6], [0.4, 0.3, 0.1, 0.1, 0.1])
    code = informative([0.1, 0.9], [0.85, 0.15])
    code = np.where(rng.random(n) < 0.3, -1, code)  # a third have no code: no evidence
    noise = rng.choice(5, n, p=[0.3, 0.3, 0.2, 0.15, 0.05])
    return truth, {"name": name, "maker": maker, "code": code, "noise": noise}


KINDS = {"name": "text", "maker": "text", "code": "code", "noise": "text"}


def test_em_gives_an_uninformative_field_little_weight_and_finds_the_matches():
    truth, levels = synthetic_levels()
    model = fit_em(KINDS, levels, records=1000)
    assert model.converged
    assert abs(model.prior - truth.mean()) < 0.01
    noise = model.fields["noise"].weights()
    assert np.abs(noise).max() < 0.6  # bits: next to nothing either way (informative: 2.5 to 5)
    assert model.fields["name"].weights()[-1] > 3 and model.fields["name"].weights()[0] < -3
    assert model.fields["code"].weights()[1] > 2
    oracle = fit_em(KINDS, levels, 1000, (np.arange(len(truth)), truth.astype(float)))  # told the truth

    def f1(m) -> float:
        decided = m.probability(levels) >= 0.5
        return 2 * (decided & truth).sum() / (decided.sum() + truth.sum())

    assert f1(model) > f1(oracle) - 0.01


def test_labels_hold_their_answer_and_calibrate_the_model():
    truth, levels = synthetic_levels()
    asked = np.arange(200)
    pinned = fit_em(KINDS, levels, 1000, (asked, truth[asked].astype(float)))
    model = calibrate(pinned, levels, asked, truth[asked].astype(float))
    assert model.labels == 200 and model.intercept is not None
    assert set(model.scale) == set(KINDS)
    # answers that say the opposite of the data move the calibration the other way
    flipped = calibrate(fit_em(KINDS, levels, 1000), levels, asked, 1.0 - truth[asked])
    assert flipped.scale["name"] < model.scale["name"] and flipped.intercept > model.intercept


def test_labels_refit_the_learned_means_weights_and_threshold():
    rng = np.random.default_rng(5)
    n = 400
    truth = rng.random(n) < 0.5
    good = np.where(truth, rng.uniform(0.7, 1.0, n), rng.uniform(0.3, 0.75, n))
    noise = rng.uniform(0, 1, n)
    sims = {"name": good, "noise": noise}
    pairs = np.arange(n)
    fit = fit_mean(sims, {"name": 1.0, "noise": 1.0}, 0.5, pairs, truth.astype(float))
    assert fit.weights["noise"] < 0.5 * fit.weights["name"]  # the answers show it says nothing
    assert 0.65 < fit.threshold < 0.75  # where the answers change: name ~0.72, noise weighs ~4%
    few = fit_mean(sims, {"name": 1.0, "noise": 1.0}, 0.5, pairs[:10], truth[:10].astype(float))
    assert abs(few.threshold - 0.5) < abs(fit.threshold - 0.5)  # ten answers move it less


def test_context_features_say_whether_a_pair_wins_its_records_and_by_how_much():
    from jammi.fusion.matching import context_features, runner_up_gap

    left, right = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 2, 3])
    score = np.array([0.9, 0.6, 0.8, 0.7, 0.5])
    # pair 0: left 0's other candidate scores 0.6, right 0 has none; pair 4 has no rival at all
    assert np.allclose(runner_up_gap(left, right, score), [0.3, -0.3, 0.1, -0.1, 0.5])
    context = context_features(left, right, score)
    assert context[:, 0].tolist() == [1, 0, 1, 0, 1]  # the best of both its records
    assert np.allclose(context[:, 1], np.clip([0.3, -0.3, 0.1, -0.1, 0.5], -0.2, 0.2) * 30)


def test_labels_refit_the_weights_and_threshold_a_little_at_first_and_more_with_more_answers():
    from jammi.fusion.matching import learn

    rng = np.random.default_rng(11)
    records = 300
    li, ri = np.repeat(np.arange(records), 3), rng.integers(0, records, 3 * records)
    ri[::3] = np.arange(records)  # each left record's first candidate is its partner
    truth = np.zeros(len(li), dtype=bool)
    truth[::3] = rng.random(records) < 0.8
    name = np.clip(np.where(truth, rng.normal(0.85, 0.1, len(li)), rng.normal(0.45, 0.15, len(li))), 0, 1)
    maker = np.clip(rng.normal(0.7, 0.15, len(li)), 0, 1)  # as alike for non-matches: says nothing
    sims = {"name": name, "maker": maker, "cos": np.clip(name + rng.normal(0, 0.1, len(li)), 0, 1)}
    comparators = {"name": "text", "maker": "text"}

    def taught(k: int):
        asked = np.r_[np.flatnonzero(truth)[:k // 2 + 1], np.flatnonzero(~truth)[:k // 2]]
        return learn("learned", comparators, sims, li, ri, 2 * records, asked, truth[asked].astype(float))

    free = learn("learned", comparators, sims, li, ri, 2 * records, np.zeros(0, np.int64), np.zeros(0))
    assert free.threshold is None and free.how == ""  # no answers: Otsu's cut (0.76) on the mean
    assert free.model.importance()["maker"] < 0.05  # EM alone already finds `maker` says nothing
    few, some, many = taught(5), taught(20), taught(200)
    assert few.how.startswith("weights and threshold fitted to 5 labels")
    # the answers place the cut between the matches' names (~0.85) and the others' (~0.45): five
    # answers move it from Otsu's 0.76 by a hundredth or two, two hundred by about a tenth
    assert 0.73 < few.threshold < 0.76 and 0.70 < some.threshold < few.threshold
    assert 0.64 < many.threshold < 0.69
    assert many.model.mean_weights["maker"] < 0.1 * many.model.mean_weights["name"]
    # the learned mean stays a mean of similarities, and it decides the pairs well
    assert ((many.score >= 0) & (many.score <= 1)).all()
    assert ((many.score >= many.threshold) == truth).mean() > 0.9


def test_review_queue_is_least_sure_contenders_first_and_skips_answered_pairs():
    pairs = pd.DataFrame({
        "left_source": "a", "left_id": ["1", "2", "3", "4"], "right_source": "b",
        "right_id": ["x", "y", "z", "w"], "score": [0.9, 0.52, 0.45, 0.51], "threshold": 0.5,
        "contender": [True, True, True, False], "linked": [True, True, False, False],
    })
    labels = labels_frame([{"left_source": "a", "left_id": "2", "right_source": "b", "right_id": "y",
                            "is_match": True}])
    assert review_queue(pairs, labels)["left_id"].tolist() == ["3", "1"]


def test_decision_margin_is_the_nearer_of_the_bar_and_the_contest():
    from jammi.fusion.matching import decision_margin

    left, right = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 2, 3])
    score = np.array([0.9, 0.85, 0.8, 0.55, 0.62])
    linked = np.array([True, False, True, False, True])
    margin = decision_margin(left, right, score, 0.7, 0.6, linked)
    # 0: linked, mutual best (bar 0.6), beats its rival (0, 1) by 0.05; 1: clears the threshold but
    # lost that contest by 0.05; 2: linked, clears 0.7 by 0.1 and its right record's rival by
    # -0.05; 3: 0.15 under the threshold and 0.25 under its rival; 4: mutual best, 0.02 over 0.6
    assert np.allclose(margin, [0.05, 0.05, 0.05, 0.4, 0.02])


def test_review_queue_asks_the_smallest_decision_margins_one_pair_per_record_first():
    pairs = pd.DataFrame({
        "left_source": "a", "left_id": ["1", "1", "2", "3", "4"], "right_source": "b",
        "right_id": ["x", "y", "y", "z", "w"], "score": [0.9, 0.88, 0.6, 0.7, 0.95],
        "threshold": 0.65, "margin": [0.02, 0.02, 0.05, 0.04, 0.3], "contender": True,
        "linked": [True, False, False, True, True],
    })
    # (1, y) names record 1 as (1, x) does, which comes first on the pair key: it waits until
    # every other record has had its turn; (2, y) does not wait, since (1, y) has not been asked
    assert least_sure_order(pairs) == [0, 3, 2, 4, 1]
    queue = review_queue(pairs, labels_frame([]))
    assert (queue["left_id"] + queue["right_id"]).tolist() == ["1x", "3z", "2y", "4w", "1y"]
    # answered pairs drop out: (1, y) now comes first, and (2, y) waits behind it
    said = labels_frame([{"left_source": "a", "left_id": "1", "right_source": "b", "right_id": "x",
                          "is_match": False}])
    rest = review_queue(pairs, said)
    assert (rest["left_id"] + rest["right_id"]).tolist() == ["1y", "3z", "4w", "2y"]


def two_sources(tmp_path: Path, scoring: str = "learned"):
    cols = {"id": "str", "title": "str", "maker": "str"}
    mapping = {"name": "title", "maker": "maker"}
    data = {
        "sources": {s: {"kind": "csv", "path": f"{s}.csv", "key": "id", "columns": cols}
                    for s in ("shop", "feed")},
        "entities": {"item": {
            "fields": {"name": "str", "maker": "str"},
            "sources": {"shop": {"priority": 1, "mapping": mapping}, "feed": {"mapping": mapping}},
            "matching": {"fields": {"name": "text", "maker": "text"}, "scoring": scoring},
        }},
    }
    (tmp_path / "jammi.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_project(tmp_path / "jammi.yaml")


WORDS = ["alpha", "bravo", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper",
         "kelp", "lumen", "mosaic", "nectar", "onyx", "prism", "quartz", "raven", "saffron", "tundra"]


def item_frames(n: int = 40) -> dict[str, pd.DataFrame]:
    """`n` items listed by both sources under different ids, the feed's titles reordered."""
    names = [f"{WORDS[i % 20]} {WORDS[(i * 7 + 3) % 20]} {i}" for i in range(n)]
    makers = [WORDS[(i * 3) % 20] + " corp" for i in range(n)]
    shop = pd.DataFrame({"id": [f"s{i}" for i in range(n)], "title": names, "maker": makers})
    feed = pd.DataFrame({"id": [f"f{i}" for i in range(n)],
                         "title": [" ".join(reversed(t.split())) for t in names], "maker": makers})
    return {"shop": shop, "feed": feed}


class HashingEncoder:
    """A fake encoder for orchestration tests (not the model): character trigrams hashed into
    64 dimensions, L2-normalised."""

    model_id, dimensions, max_seq_length = "test-hashing", 64, 512

    def encode(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f"  {text.casefold()} "
            for i in range(len(padded) - 2):
                out[row, zlib.crc32(padded[i:i + 3].encode()) % 64] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_a_yes_always_links_even_beside_another_partner_and_a_no_never_does(tmp_path):
    project = two_sources(tmp_path)
    frames = item_frames()
    plain = fuse_entity(project, "item", frames, HashingEncoder())
    linked = plain.links[plain.links["accepted"]]
    assert {("feed", "f3", "shop", "s3")} <= set(linked[["left_source", "left_id", "right_source",
                                                         "right_id"]].itertuples(index=False, name=None))
    labels = labels_frame([
        {"left_source": "feed", "left_id": "f3", "right_source": "shop", "right_id": "s3", "is_match": False},
        {"left_source": "feed", "left_id": "f5", "right_source": "shop", "right_id": "s9", "is_match": True},
    ])
    taught = fuse_entity(project, "item", frames, HashingEncoder(), labels=labels)
    accepted = taught.links[taught.links["accepted"]]
    pairs = set(accepted[["left_id", "right_id"]].itertuples(index=False, name=None))
    assert ("f3", "s3") not in pairs and ("f5", "s9") in pairs
    assert accepted.loc[accepted["left_id"].eq("f5"), "rule"].str.startswith("match:labelled yes").all()
    said = taught.pairs[taught.pairs["answer"].notna()]
    assert len(said) == 2 and said["held_out"].notna().all()
    assert taught.stats["labels_used"] == 2
    assert taught.models["feed~shop"]["labels"] == 2
    # two yes for one record (the shop lists item 5 twice, once as s9, whose feed record is
    # gone): one-to-one assignment takes one, and the other links too, as one more shop record
    frames["feed"] = frames["feed"][frames["feed"]["id"] != "f9"]
    both = labels_frame([
        {"left_source": "feed", "left_id": "f5", "right_source": "shop", "right_id": r, "is_match": True}
        for r in ("s5", "s9")])
    twice = fuse_entity(project, "item", frames, HashingEncoder(), labels=both)
    mine = twice.links[twice.links["left_id"].eq("f5")].sort_values("right_id")
    assert mine["right_id"].tolist() == ["s5", "s9"] and mine["accepted"].all()
    assert mine["rule"].str.startswith("match:duplicate: labelled yes").sum() == 1
    entity = twice.records.set_index(["_source", "_record_id"])["_entity_id"]
    assert entity[("shop", "s5")] == entity[("shop", "s9")] == entity[("feed", "f5")]


def test_labels_csv_in_both_shapes_and_refused_with_the_row_named(tmp_path):
    spec = two_sources(tmp_path).entities["item"]
    full = tmp_path / "full.csv"
    full.write_text("left_source,left_id,right_source,right_id,label\nshop,s1,feed,f1,yes\n"
                    "feed,f2,shop,s3,n\n", encoding="utf-8")
    assert read_labels_csv(full, "item", spec) == [("feed", "f1", "shop", "s1", True),
                                                   ("feed", "f2", "shop", "s3", False)]
    gold = tmp_path / "gold.csv"
    gold.write_text("shop,feed\ns1,f1\ns2,f2\n", encoding="utf-8")
    assert [r[-1] for r in read_labels_csv(gold, "item", spec)] == [True, True]
    bad = tmp_path / "bad.csv"
    bad.write_text("left_source,left_id,right_source,right_id,label\nshop,s1,feed,f1,maybe\n"
                   "shop,s1,store,f1,y\n", encoding="utf-8")
    with pytest.raises(FusionError, match=r"row 2: label 'maybe'.*row 3: sources 'shop' and 'store'"):
        read_labels_csv(bad, "item", spec)


def test_labels_live_in_the_catalog_survive_reruns_and_feed_the_check(tmp_path):
    project = two_sources(tmp_path)
    frames, encoder = item_frames(), HashingEncoder()
    first = fuse_and_check(project, "item", frames, encoder)
    assert next(o for o in first.outcomes if o.name == LABELS).statistic is None
    queue = review_pairs(project, "item", limit=5)
    assert queue and queue[0].left and queue[0].right  # both records' fields to show
    for pair in queue[:3]:
        record_answer(project, "item", pair.key, pair.key[1][1:] == pair.key[3][1:], by="ana")
    answers = tmp_path / "answers.csv"
    answers.write_text("shop,feed,label\ns7,f7,y\ns8,f9,n\n", encoding="utf-8")
    assert load_labels(project, "item", answers, by="bo") == 2
    stored = list_labels(project, "item")
    assert len(stored) == 5 and set(stored["labelled_by"]) == {"ana", "bo"}
    with duckdb.connect(str(project.artifact_dir / "jammi.duckdb"), read_only=True) as con:
        stored_rows = con.execute("SELECT count(*) FROM jammi.fusion_labels WHERE entity = 'item'").fetchone()
    assert stored_rows[0] == 5
    again = fuse_and_check(project, "item", frames, encoder)  # a rerun reads them back
    check = next(o for o in again.outcomes if o.name == LABELS)
    assert check.details["true_pos"] + check.details["false_pos"] + check.details["false_neg"] \
        + check.details["true_neg"] == 5
    assert "precision" in check.description and "recall" in check.description
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("shop,feed\ns1,nope\n", encoding="utf-8")
    with pytest.raises(FusionError, match="feed:nope"):
        load_labels(project, "item", unknown)
    assert len(Catalog(project.artifact_dir).fusion_labels("item")) == 5


def test_review_command_stores_answers_until_quit(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from jammi.cli import cli

    project = two_sources(tmp_path)
    fuse_and_check(project, "item", item_frames(), HashingEncoder())
    monkeypatch.setenv("JAMMI_PROJECT", str(project.path))
    monkeypatch.setenv("COLUMNS", "100")
    out = CliRunner().invoke(cli, ["fusion", "review", "item", "--by", "cy"], input="y\nn\ns\nq\n")
    assert out.exit_code == 0, out.output
    assert "pair 1 of" in out.output and "score" in out.output and "name" in out.output
    assert "2 answer(s) stored (1 yes, 1 no, 1 skipped)" in out.output
    stored = list_labels(project, "item")
    assert stored["is_match"].tolist() == [True, False] and set(stored["labelled_by"]) == {"cy"}
    listed = invoke_cli(["fusion", "labels", "item", "--format", "csv"])
    assert listed.exit_code == 0 and listed.output.count("cy") == 2
    missing = invoke_cli(["fusion", "review", "nothing"])
    assert missing.exit_code == 1 and "entity 'nothing' is not declared" in missing.output


def test_a_long_free_text_field_is_embedded_on_its_own_and_read_for_no_codes(tmp_path):
    from jammi.fusion.scoring import code_fields, free_text

    records = pd.DataFrame({"name": ["acme widget x100", "acme gadget"],
                            "notes": [" ".join(["word"] * 30) + " fits z900", " ".join(["other"] * 25)]})
    assert free_text(records, ["name", "notes"]) == ["notes"]
    assert code_fields({"name": "text", "notes": "text", "sku": "code"}, ["notes"]) == ["name", "sku"]
    project = two_sources(tmp_path)
    frames = {s: f.assign(title=f["title"] + " " + " ".join(["filler"] * 25))  # titles as long as notes
              for s, f in item_frames().items()}
    result = fuse_entity(project, "item", frames, HashingEncoder())
    assert "sim_cos_name" in result.pairs.columns  # the free-text title has its own cosine
    assert "cos_name" in result.models["feed~shop"]["fields"]
