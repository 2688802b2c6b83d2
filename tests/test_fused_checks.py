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
from jammi.spec.entities import EntitySpec

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


def test_coverage_reports_the_least_covered_source():
    out = source_coverage(fused([1, 2, 1, 1], ["shop", "feed,shop", "shop", "shop"]), ENTITY)
    assert out.details["coverage"] == {"shop": 1.0, "feed": 0.25}
    assert not out.passed and out.statistic == pytest.approx(0.25) and "'feed'" in out.description
    assert source_coverage(fused([2, 2], ["feed,shop", "shop"]), ENTITY).passed


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


def test_empty_fused_frame_passes_without_dividing_by_zero():
    empty = fused([], [])
    prov = pd.DataFrame(columns=["field", "candidates", "conflict", "source", "record_id", "value"])
    outcomes = {o.name: o for o in fused_checks(empty, prov, "item_id", ENTITY)}
    assert outcomes["unique_entity_id"].passed and outcomes["cluster_size"].passed
    assert outcomes["conflict_rate"].passed
    assert not outcomes["source_coverage"].passed  # min_coverage 0.3 with no entities
