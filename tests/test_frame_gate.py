"""Checks on validated frames, wired as blocking asset checks: a failed error check stops the
embeddings from being rebuilt, and the previous ready table keeps serving search."""

from __future__ import annotations

import pytest

from jammi.app.facade import Jammi
from jammi.errors import ConfigError
from jammi.quality.frame_gate import BASE_CHECKS
from jammi.spec.project import parse_project
from jammi.tables.catalog import Catalog
from tests.conftest import PRODUCT_COLUMNS, failure_message, materialize, write_project

CLEAN = (
    "id,title,body,price\n"
    "1,Red running shoes,Light trail runners for wet weather,59.5\n"
    "2,Espresso machine,Fifteen bar pump and a steam wand,199\n"
    "3,Cast iron skillet,Pre-seasoned ten inch pan,35\n"
    "4,Noise cancelling headphones,Wireless over-ear headphones,149\n"
    "5,Yoga mat,Non-slip mat for home workouts,25\n"
)


def _project(tmp_path, quality=None, extra_sources=None):
    src = {"kind": "csv", "path": "data/products.csv", "key": "id", "columns": PRODUCT_COLUMNS}
    if quality:
        src["quality"] = quality
    return write_project(
        tmp_path, {"products": src, **(extra_sources or {})},
        {"products": {"source": "products", "text_columns": ["title", "body"]}},
    )


def _evals(result, asset="validated_products"):
    return {e.check_name: e for e in result.get_asset_check_evaluations()
            if e.asset_key.to_user_string() == asset}


@pytest.mark.slow
def test_every_frame_check_is_reported_with_its_statistic(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "products.csv").write_text(CLEAN, encoding="utf-8")
    result = materialize(_project(tmp_path))
    assert result.success
    evals = _evals(result)
    assert set(evals) == set(BASE_CHECKS)
    assert all(e.passed for e in evals.values())
    assert "too few for a robust spread" in evals["outliers"].metadata["description"].value
    assert evals["completeness"].metadata["statistic"].value == 0.0
    assert "no previous" in evals["distribution_drift"].metadata["description"].value


@pytest.mark.slow
def test_blocking_check_keeps_the_previous_table_serving(tmp_path):
    (tmp_path / "data").mkdir()
    csv = tmp_path / "data" / "products.csv"
    csv.write_text(CLEAN, encoding="utf-8")
    project = _project(tmp_path, {"schema_conformance": {"max_rate": 0.2, "severity": "error"}})
    assert materialize(project).success
    good = Catalog(project.artifact_dir).newest_ready(pipeline="products")
    before = Jammi(project).search("products", "coffee", k=3)

    # half the rows now fail validation: schema conformance (error) must block embedding
    csv.write_text(CLEAN + "6,Broken,priceless,abc\n7,Broken too,negative,-1\n8,Also,x,-2\n"
                   "9,More,y,zz\n10,Last,z,-5\n", encoding="utf-8")
    result = materialize(project)
    evals = _evals(result)
    assert evals["schema_conformance"].passed is False
    assert evals["schema_conformance"].metadata["statistic"].value == pytest.approx(0.5)
    assert not result.success and "schema_conformance" in failure_message(result)
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "products_embeddings" not in done and "products_ann_index" not in done
    tables = Catalog(project.artifact_dir).tables(pipeline="products")
    assert [t.table_name for t in tables] == [good.table_name]
    assert Jammi(project).search("products", "coffee", k=3)["_row_id"].tolist() == before["_row_id"].tolist()


@pytest.mark.slow
def test_referential_integrity_between_sources(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "products.csv").write_text(CLEAN, encoding="utf-8")
    (tmp_path / "data" / "orders.csv").write_text(
        "order_id,product_id,note\no1,1,fine\no2,2,fine\no3,99,orphan\no4,98,orphan\n", encoding="utf-8"
    )
    orders = {"kind": "csv", "path": "data/orders.csv", "key": "order_id",
              "columns": {"order_id": "str", "product_id": "int", "note": "str"},
              "quality": {"foreign_keys": [{"column": "product_id", "references": "products.id",
                                            "max_orphans": 0, "severity": "warn"}]}}
    project = _project(tmp_path, extra_sources={"orders": orders})
    result = materialize(project)
    assert result.success  # a warn check reports, it does not block
    fk = _evals(result, "validated_orders")["referential_integrity_product_id"]
    assert fk.passed is False and fk.metadata["statistic"].value == 2.0


@pytest.mark.parametrize(
    ("quality", "message"),
    [
        ({"completeness": {"max_null_rate": 1.5}}, "completeness.max_null_rate"),
        ({"outliers": {"numeric": ["nope"]}}, "quality.outliers.numeric: 'nope' is not a declared column"),
        ({"drift": {"severity": "fatal"}}, "drift.severity"),
        ({"foreign_keys": [{"column": "id", "references": "ghost.id"}]}, "'ghost.id' is not a declared"),
    ],
)


def test_bad_quality_config_fails_at_load(tmp_path, quality, message):
    doc = {"sources": {"products": {"kind": "csv", "path": "x.csv", "key": "id",
                                    "columns": PRODUCT_COLUMNS, "quality": quality}}}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_project(doc, tmp_path / "jammi.yaml")
