"""`jammi materialize --select`: names expand to the assets they mean, and an asset that shares
its step with others brings them along, as the Dagster UI does."""

from __future__ import annotations

import os

import dagster as dg
import pytest

from jammi.errors import JammiError
from jammi.spec.project import load_project
from jammi_assets.definitions import build_assets
from jammi_assets.runner import resolve_selection
from tests.conftest import PRODUCT_COLUMNS, REPO, invoke_cli, write_project


@pytest.fixture(scope="module")
def demo():
    project = load_project(REPO / "jammi.yaml")
    return project, build_assets(project)


def names(keys: list[dg.AssetKey]) -> list[str]:
    return [k.to_user_string() for k in keys]


@pytest.mark.parametrize("select, expected", [
    (["validated_products"], ["validated_products", "quarantine_products"]),
    (["quarantine_reviews"], ["quarantine_reviews", "validated_reviews"]),
    (["fused_product_links"], ["fused_product_links", "fused_product", "fused_product_provenance"]),
    (["raw_products"], ["raw_products"]),
    (["reviews"], ["raw_reviews", "validated_reviews", "quarantine_reviews", "reviews_embeddings",
                   "reviews_ann_index"]),
])
def test_selection_expands_names_and_step_siblings(demo, select, expected):
    project, assets = demo
    assert names(resolve_selection(project, select, assets)) == expected


def test_entity_name_selects_its_sources_fusion_and_pipelines(demo):
    project, assets = demo
    chosen = names(resolve_selection(project, ["product"], assets))
    assert {"raw_inventory", "validated_partners", "fused_product", "fused_product_links",
            "product_entities_embeddings", "product_entities_ann_index"} <= set(chosen)
    assert "products_embeddings" not in chosen


def test_unknown_name_lists_the_assets(demo):
    project, assets = demo
    with pytest.raises(JammiError, match="--select 'nope': not an asset, source, entity or pipeline"):
        resolve_selection(project, ["nope"], assets)


def test_cli_materializes_an_asset_that_shares_its_step(tmp_path, products_csv, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    project = write_project(tmp_path, {"products": {"kind": "csv", "path": str(products_csv),
                                                    "key": "id", "columns": PRODUCT_COLUMNS}})
    cwd = os.getcwd()
    try:
        first = invoke_cli(["materialize", "--project", str(project.path), "--select", "raw_products"])
        result = invoke_cli(["materialize", "--project", str(project.path), "--select",
                             "validated_products"])
    finally:
        os.chdir(cwd)  # the runner works from DAGSTER_HOME
    assert first.exit_code == 0, first.output
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "validated_products" in result.output and "quarantine_products" in result.output
