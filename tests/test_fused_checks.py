"""Checks on the fused entity frame: each can fail, and says why with examples."""

from __future__ import annotations

import pandas as pd
import pytest

from jammi.quality.fused_checks import (
    cluster_size,
    conflict_rate,
    fused_checks,
    source_coverage,
    unique_entity_id,
)
from jammi.spec.entities import EntitySpec, FusedQualitySpec

ENTITY = EntitySpec.model_validate({
    "fields": {"title": "str", "price": "float"},
    "sources": {"shop": {"mapping": {"title": "title"}}, "feed": {"mapping": {"title": "name"}}},
    "quality": {"max_cluster_size": 3, "min_coverage": 0.3, "max_conflict_rate": 0.5},
})


def fused(sizes: list[int], sources: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"e{i}" for i in range(len(sizes))], "_record_count": sizes,
                         "_sources": sources})


def test_a_giant_cluster_fails_and_is_named_with_the_size_distribution():
    ok = cluster_size(fused([1, 2, 3], ["shop"] * 3), "item_id", ENTITY)
    assert ok.passed and ok.statistic == 3.0
    giant = cluster_size(fused([1, 2, 40, 2], ["shop"] * 4), "item_id", ENTITY)
    assert not giant.passed and giant.severity == "error"
    assert giant.statistic == 40.0 and giant.threshold == 3.0
    assert giant.examples == ["e2"]
    assert giant.details["size_distribution"] == {"1": 1, "2": 2, "40": 1}


def test_repeated_or_null_entity_ids_fail():
    frame = fused([1, 1, 1], ["shop"] * 3)
    assert unique_entity_id(frame, "item_id").passed
    frame.loc[2, "item_id"] = "e0"
    out = unique_entity_id(frame, "item_id")
    assert not out.passed and out.examples == ["e0"] and out.statistic == 1.0
    frame.loc[1, "item_id"] = None
    assert unique_entity_id(frame, "item_id").statistic == 2.0


def test_coverage_reports_the_source_that_meets_no_other():
    out = source_coverage(fused([1, 2, 1, 1], ["shop", "feed,shop", "shop", "shop"]), ENTITY)
    assert out.details["coverage"] == {"shop": 0.25, "feed": 1.0}
    assert not out.passed and out.statistic == pytest.approx(0.25) and "'shop'" in out.description
    assert source_coverage(fused([2, 2, 1], ["feed,shop", "feed,shop", "shop"]), ENTITY).passed


def test_default_coverage_fails_a_source_that_is_never_fused_and_passes_one_that_is():
    ent = ENTITY.model_copy(update={"quality": FusedQualitySpec()})
    never = fused([1] * 40 + [2], ["shop"] * 20 + ["feed"] * 20 + ["feed,shop"])
    out = source_coverage(never, ent)
    assert not out.passed and out.threshold == 0.05 and out.statistic == pytest.approx(1 / 21)
    fused_ok = fused([1] * 30 + [2] * 10, ["shop"] * 15 + ["feed"] * 15 + ["feed,shop"] * 10)
    assert source_coverage(fused_ok, ent).passed
    lone = EntitySpec.model_validate({"fields": {"title": "str"},
                                      "sources": {"shop": {"mapping": {"title": "title"}}}})
    assert source_coverage(fused([1, 1], ["shop", "shop"]), lone).passed


def test_conflict_rate_per_field_counts_only_contested_entities():
    prov = pd.DataFrame({
        "field": ["title", "title", "title", "price", "price"],
        "candidates": [2, 2, 1, 2, 2],
        "conflict": [True, True, False, False, True],
        "source": "shop", "record_id": ["r1", "r2", "r3", "r4", "r5"], "value": ["a", "b", "c", "1", "2"],
    })
    out = conflict_rate(prov, ENTITY)
    assert out.details["conflict_rate"] == {"price": 0.5, "title": 1.0}
    assert not out.passed and out.statistic == 1.0 and "'title'" in out.description
    assert [e["record_id"] for e in out.examples] == ["r1", "r2"]
    per_field = ENTITY.model_copy(update={"quality": FusedQualitySpec(max_conflict_rate={"title": 1.0})})
    out = conflict_rate(prov, per_field)
    assert out.passed and out.details["limits"] == {"price": 0.5, "title": 1.0}
    strict = ENTITY.model_copy(update={"quality": FusedQualitySpec(max_conflict_rate={"default": 0.4,
                                                                                      "title": 1.0})})
    out = conflict_rate(prov, strict)
    assert not out.passed and "'price'" in out.description and out.threshold == 0.4


def test_default_conflict_rate_fails_links_that_join_different_things():
    def provenance(conflicts: int, n: int = 10) -> pd.DataFrame:
        return pd.DataFrame({"field": "brand", "candidates": 2, "conflict": [True] * conflicts
                             + [False] * (n - conflicts), "source": "shop",
                             "record_id": [f"r{i}" for i in range(n)], "value": "x"})

    ent = ENTITY.model_copy(update={"quality": FusedQualitySpec()})
    assert not conflict_rate(provenance(10), ent).passed  # every contested brand disagrees
    assert not conflict_rate(provenance(6), ent).passed
    assert conflict_rate(provenance(1), ent).passed


def test_case_only_differences_are_no_conflict_end_to_end():
    from jammi.fusion.resolve import resolve

    ent = EntitySpec.model_validate({
        "fields": {"brand": "str"},
        "sources": {"shop": {"mapping": {"brand": "b"}}, "feed": {"mapping": {"brand": "b"}}}})
    recs = pd.DataFrame({"_source": ["shop", "feed", "shop", "feed"], "_record_id": ["1", "2", "3", "4"],
                         "_observed_at": pd.Series([pd.NaT] * 4, dtype="datetime64[ns, UTC]"),
                         "_priority": [1, 2, 1, 2], "_quality": 1.0,
                         "brand": pd.array(["ACME", " acme", "Zeta  Co", "zeta co"], dtype="string")})
    _, prov = resolve(recs, pd.Series(["e1", "e1", "e2", "e2"]), ent, "eid")
    assert prov["rule"].tolist() == ["agreed", "agreed"] and not prov["conflict"].any()
    assert conflict_rate(prov, ent).passed
    recs.loc[3, "brand"] = "Omega"
    _, prov = resolve(recs, pd.Series(["e1", "e1", "e2", "e2"]), ent, "eid")
    assert conflict_rate(prov, ent).statistic == 0.5


def test_empty_fused_frame_passes_without_dividing_by_zero():
    empty = fused([], [])
    prov = pd.DataFrame(columns=["field", "candidates", "conflict", "source", "record_id", "value"])
    outcomes = {o.name: o for o in fused_checks(empty, prov, "item_id", ENTITY)}
    assert outcomes["unique_entity_id"].passed and outcomes["cluster_size"].passed
    assert outcomes["conflict_rate"].passed
    assert not outcomes["source_coverage"].passed  # min_coverage 0.3 with no entities
