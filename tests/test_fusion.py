"""Entity fusion end to end through `fuse_entity`: keys and matching link records, clusters
are guarded, conflicts resolve by the declared rules, incremental equals full."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jammi.errors import ConfigError, FusionError
from jammi.fusion.clusters import cluster, key_links
from jammi.fusion.fuse import fuse_entity
from jammi.spec.project import parse_project

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def embed():
    from jammi.embedding.model import load_encoder

    return load_encoder(MODEL, "cpu")


class CountingEncoder:
    """Passes texts to a real encoder and counts how many reach it."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        self.model_id, self.dimensions = inner.model_id, inner.dimensions
        self.max_seq_length = inner.max_seq_length

    def encode(self, texts):
        self.calls.append(len(texts))
        return self.inner.encode(texts)


def project(tmp_path: Path, entities: dict, sources: dict | None = None):
    sources = sources or {
        "primary_db": {"kind": "csv", "path": "a.csv", "key": "id",
                       "columns": {"id": "str", "name": "str", "email": "str", "updated": "datetime"}},
        "user_input": {"kind": "csv", "path": "b.csv", "key": "uid",
                       "columns": {"uid": "str", "full_name": "str", "mail": "str", "phone": "str",
                                   "ts": "datetime"}},
    }
    return parse_project({"sources": sources, "entities": entities}, tmp_path / "jammi.yaml")


CUSTOMER = {
    "fields": {"name": "str", "email": "str", "phone": "str", "customer_ref": "str"},
    "link_keys": ["customer_ref"],
    "sources": {
        "primary_db": {"priority": 1, "timestamp": "updated",
                       "mapping": {"customer_ref": "id", "name": "name", "email": "email"}},
        "user_input": {"priority": 2, "timestamp": "ts",
                       "mapping": {"customer_ref": "uid", "name": "full_name", "email": "mail",
                                   "phone": "phone"}},
    },
    "resolution": {"email": ["most_recent"], "name": ["priority"]},
    "matching": {"enabled": False},
}


def chapter_frames() -> dict[str, pd.DataFrame]:
    primary = pd.DataFrame({"id": ["c1"], "name": ["John Smith"], "email": ["john@old.example"],
                            "updated": pd.to_datetime(["2023-01-01"])})
    user = pd.DataFrame({"uid": ["c1"], "full_name": ["Johnny Smith"], "mail": ["john@new.example"],
                         "phone": ["+1 555 0100"], "ts": pd.to_datetime(["2024-06-01"])})
    return {"primary_db": primary, "user_input": user}


@pytest.mark.slow
def test_chapter_example_rules_do_what_they_say(tmp_path, embed):
    proj = project(tmp_path, {"customer": CUSTOMER})
    result = fuse_entity(proj, "customer", chapter_frames(), embed)
    assert len(result.entities) == 1
    row = result.entities.iloc[0]
    assert row["email"] == "john@new.example"  # most_recent: user_input is newer
    assert row["name"] == "John Smith"  # priority: primary_db ranks first
    assert row["phone"] == "+1 555 0100"  # only user_input has it
    assert row["_record_count"] == 2 and row["_sources"] == "primary_db,user_input"
    prov = result.provenance.set_index("field")
    assert prov.loc["email", "source"] == "user_input" and prov.loc["email", "rule"] == "most_recent"
    assert prov.loc["name", "source"] == "primary_db" and prov.loc["name", "rule"] == "priority"
    assert prov.loc["phone", "source"] == "user_input" and not prov.loc["phone", "conflict"]
    assert bool(prov.loc["email", "conflict"])
    link = result.links.iloc[0]
    assert link["rule"] == "key:customer_ref" and link["score"] == 1.0 and link["accepted"]


@pytest.mark.slow
def test_priority_for_email_flips_the_winner(tmp_path, embed):
    spec = {**CUSTOMER, "resolution": {"email": ["priority"]}}
    result = fuse_entity(project(tmp_path, {"customer": spec}), "customer", chapter_frames(), embed)
    assert result.entities.iloc[0]["email"] == "john@old.example"


def test_guard_refuses_a_weak_link_that_would_chain_two_entities():
    sources = ["a", "b", "a", "b"]
    links = pd.DataFrame({"left": [0, 2, 2], "right": [1, 3, 1], "score": [0.95, 0.93, 0.61],
                          "rule": ["match", "match", "match"]})
    labels, out = cluster(sources, links)
    assert labels.tolist() == [0, 0, 2, 2]
    weak = out.iloc[2]
    assert not weak["accepted"] and "same source" in weak["refused_because"]
    # without the guard (size limit 4) the weak link chains everything into one cluster
    labels, _ = cluster(sources, links, max_cluster_size=4)
    assert len(set(labels.tolist())) == 1


def test_key_links_normalise_and_star_link():
    records = pd.DataFrame({"ref": [" X1", "x1", None, "X1 ", "y"]})
    links = key_links(records, ["ref"])
    assert sorted(map(tuple, links[["left", "right"]].to_numpy().tolist())) == [(0, 1), (0, 3)]
    assert set(links["rule"]) == {"key:ref"}


PRODUCTS = {
    "fields": {"title": "str", "brand": "str", "price": "float"},
    "sources": {
        "shop": {"priority": 1, "timestamp": "ts", "mapping": {"title": "title", "brand": "brand",
                                                               "price": "price"}},
        "feed": {"priority": 2, "timestamp": "seen", "mapping": {"title": "name", "brand": "maker",
                                                                 "price": "cost"}},
    },
    "resolution": {"price": ["most_recent", "priority"]},
    "matching": {"fields": {"title": "text", "brand": "exact"}, "embed": ["brand", "title"]},
}
PRODUCT_SOURCES = {
    "shop": {"kind": "csv", "path": "s.csv", "key": "sku",
             "columns": {"sku": "str", "title": "str", "brand": "str", "price": "float", "ts": "datetime"}},
    "feed": {"kind": "csv", "path": "f.csv", "key": "fid",
             "columns": {"fid": "str", "name": "str", "maker": "str", "cost": "float", "seen": "datetime"}},
}
ITEMS = [
    ("Acme", "stainless steel espresso machine"), ("Nordkap", "waterproof hiking backpack 40l"),
    ("Lumen", "led desk lamp with dimmer"), ("Verdant", "bamboo cutting board large"),
    ("Ironclad", "cast iron skillet 12 inch"), ("Kestrel", "carbon road bike helmet"),
    ("Helix", "noise cancelling wireless headphones"), ("Orbit", "robot vacuum cleaner"),
    ("Cobalt", "mechanical keyboard brown switches"), ("Juniper", "merino wool throw blanket"),
    ("Quarry", "adjustable dumbbells 24kg"), ("Solano", "two person dome tent"),
]


def product_frames(changed: bool = False) -> dict[str, pd.DataFrame]:
    shop = pd.DataFrame({"sku": [f"s{i}" for i in range(len(ITEMS))],
                         "title": [f"{b} {t}" for b, t in ITEMS], "brand": [b for b, _ in ITEMS],
                         "price": [10.0 + i for i in range(len(ITEMS))],
                         "ts": pd.to_datetime(["2024-01-01"] * len(ITEMS))})
    feed_items = ITEMS[:8] + [("Tundra", "insulated water bottle")]
    feed = pd.DataFrame({"fid": [f"f{i}" for i in range(len(feed_items))],
                         "name": [f"{t.title()} by {b}" for b, t in feed_items],
                         "maker": [b for b, _ in feed_items],
                         "cost": [20.0 + i for i in range(len(feed_items))],
                         "seen": pd.to_datetime(["2024-03-01"] * len(feed_items))})
    if changed:
        feed.loc[2, "cost"] = 99.0  # a price update on one matched product
        feed = pd.concat([feed, pd.DataFrame({"fid": ["f99"], "name": ["Two Person Dome Tent by Solano"],
                                              "maker": ["Solano"], "cost": [55.0],
                                              "seen": pd.to_datetime(["2024-05-01"])})],
                         ignore_index=True)
    return {"shop": shop, "feed": feed}


@pytest.mark.slow
def test_matching_links_records_without_keys(tmp_path, embed):
    proj = project(tmp_path, {"product": PRODUCTS}, PRODUCT_SOURCES)
    result = fuse_entity(proj, "product", product_frames(), embed)
    accepted = result.links[result.links["accepted"]]
    pairs = set(zip(accepted["left_id"], accepted["right_id"], strict=True)) | set(
        zip(accepted["right_id"], accepted["left_id"], strict=True))
    for i in range(8):
        assert (f"s{i}", f"f{i}") in pairs
    assert not any("f8" in p for p in pairs)  # the feed-only product stays alone
    assert len(result.entities) == len(ITEMS) + 1
    assert all(accepted["rule"].str.len() > 0) and accepted["score"].between(0, 1).all()
    merged = result.entities.set_index("product_id")
    assert merged.loc["shop:s0", "price"] == 20.0  # most_recent: the feed's later price


@pytest.mark.slow
def test_incremental_equals_full_and_only_touches_changed_entities(tmp_path, embed):
    proj = project(tmp_path, {"product": PRODUCTS}, PRODUCT_SOURCES)
    first = fuse_entity(proj, "product", product_frames(), embed)
    counting = CountingEncoder(embed)
    incremental = fuse_entity(proj, "product", product_frames(changed=True), counting, first.state())
    full = fuse_entity(proj, "product", product_frames(changed=True), embed)
    pd.testing.assert_frame_equal(incremental.entities, full.entities)
    pd.testing.assert_frame_equal(incremental.provenance, full.provenance)
    assert sum(counting.calls) == 1  # only the new feed record's text was embedded
    # the price update touches one entity, the new record another; the rest are carried over
    assert incremental.stats["entities_resolved"] == 2
    assert incremental.stats["entities_reused"] == len(full.entities) - 2
    assert full.entities.set_index("product_id").loc["shop:s2", "price"] == 99.0


@pytest.mark.slow
def test_unparseable_timestamp_names_source_column_and_record(tmp_path, embed):
    proj = project(tmp_path, {"customer": CUSTOMER})
    frames = chapter_frames()
    frames["user_input"] = frames["user_input"].astype({"ts": object})
    frames["user_input"].loc[0, "ts"] = "yesterday-ish"
    with pytest.raises(FusionError) as err:
        fuse_entity(proj, "customer", frames, embed)
    msg = str(err.value)
    assert "user_input" in msg and "ts" in msg and "c1" in msg


@pytest.mark.parametrize("change, expected", [
    (lambda e: e["sources"]["primary_db"]["mapping"].update(nickname="name"),
     "'nickname' is not a field of the entity"),
    (lambda e: e["sources"]["primary_db"]["mapping"].update(name="surname"),
     "'surname' is not a column of source 'primary_db'"),
    (lambda e: e.update(sources={}), "at least one source"),
    (lambda e: e["sources"]["primary_db"].update(timestamp="when"),
     "timestamp: 'when' is not a column of source 'primary_db'"),
    (lambda e: e["sources"].update(ghost={"mapping": {"name": "x"}}), "unknown source 'ghost'"),
    (lambda e: e.update(resolution={"email": ["loudest"]}), "resolution.email"),
])


def test_bad_entity_declarations_fail_at_load(tmp_path, change, expected):
    import copy

    spec = copy.deepcopy(CUSTOMER)
    change(spec)
    with pytest.raises(ConfigError) as err:
        project(tmp_path, {"customer": spec})
    assert expected in str(err.value)
    assert "jammi.yaml" in str(err.value)


class FakeEncoder:
    """Orchestration only: records what reaches the model, returns constant vectors."""

    dimensions, max_seq_length = 3, 128

    def __init__(self, model_id: str):
        self.model_id, self.calls = model_id, []

    def encode(self, texts):
        self.calls.append(list(texts))
        return np.ones((len(texts), 3), dtype=np.float32)


def test_vectors_are_cached_by_model_and_text(tmp_path):
    from jammi.fusion.fuse import embed_records

    cache: dict[str, np.ndarray] = {}
    fake = FakeEncoder("model-a")
    vecs, n = embed_records(["a", "b", "", "a"], fake, cache)
    assert n == 2 and sorted(map(sorted, fake.calls)) == [["a", "b"]] and vecs.shape == (4, 3)
    assert not vecs[2].any()
    _, n = embed_records(["a", "c"], fake, cache)
    assert n == 1 and fake.calls[-1] == ["c"]
    other = FakeEncoder("model-b")  # same texts, another model: nothing is reused
    _, n = embed_records(["a", "c"], other, cache)
    assert n == 2 and sorted(other.calls[0]) == ["a", "c"]
