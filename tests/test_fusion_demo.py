"""The demo project's product entity, fused from three sources through the Dagster graph:
once with the inventory as a DuckDB table (the embedded default) and once with the same
inventory as a table in the local PostgreSQL server. Both must give the same entities."""

from __future__ import annotations

import csv as _csv
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from jammi.demo.generate import write_demo
from jammi.query.search import search
from jammi.spec.project import load_project
from jammi.tables.catalog import Catalog
from jammi_assets.definitions import build_assets
from jammi_assets.runner import resolve_selection
from tests.conftest import REPO, materialize

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

PG_DSN = "postgresql://127.0.0.1:5432/test"
SELECTION = ["product", "product_entities"]


def demo_project(root: Path, inventory: dict | None = None):
    """The repository's jammi.yaml over a small generated corpus under `root`."""
    write_demo(root / "data" / "demo", products=240, review_files=1)
    doc = yaml.safe_load((REPO / "jammi.yaml").read_text(encoding="utf-8"))
    if inventory is not None:
        doc["sources"]["inventory"] = {**doc["sources"]["inventory"], **inventory}
        if "database" not in inventory:
            doc["sources"]["inventory"].pop("database", None)
    (root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_project(root / "jammi.yaml")


def run_fusion(project) -> dg.ExecuteInProcessResult:
    selection = resolve_selection(project, SELECTION, build_assets(project))
    result = materialize(project, selection=selection)
    assert result.success
    return result


@pytest.fixture(scope="module")
def duckdb_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_duckdb")
    project = demo_project(root)
    return project, run_fusion(project)


def test_demo_fuses_three_sources_with_provenance(duckdb_run):
    project, result = duckdb_run
    con = duckdb.connect(str(project.artifact_dir / "jammi.duckdb"), read_only=True)
    fused = con.execute("SELECT * FROM jammi.fused_product").df()
    prov = con.execute("SELECT * FROM jammi.fused_product_provenance").df()
    sources = set(",".join(fused["_sources"]).split(","))
    assert sources == {"products", "inventory", "partners"}
    assert fused["product_key"].is_unique
    three = fused[fused["_record_count"] == 3]
    assert len(three) > 0  # some products are known to all three sources
    # every partner-only product keeps its own entity, named after its partner record
    assert fused["product_key"].str.startswith("partners:").any()
    # price follows most_recent: each winner is the latest observation among the entity's candidates
    price = prov[prov["field"] == "price"]
    assert set(price["rule"]) <= {"most_recent", "priority", "only_value", "agreed", "tie_break"}
    assert len(prov) >= len(fused)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    for name in ("unique_entity_id", "source_coverage", "conflict_rate", "cluster_size"):
        assert checks[name] is True, name
    # the fused entity is embedded like any source, and _source_id says it is fused
    emb = con.execute("SELECT DISTINCT _source_id FROM jammi.product_entities_embeddings").fetchall()
    assert emb == [("fused_product",)]
    hits = search(project, "product_entities", fused["title"].iloc[0], k=3)
    assert hits["_row_id"].iloc[0] == fused["product_key"].iloc[0]


def test_same_fusion_with_inventory_in_postgres(duckdb_run, tmp_path):
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = psycopg.connect(PG_DSN, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL at {PG_DSN} is unreachable: {str(err).strip().splitlines()[0]}")
    duck_project, _ = duckdb_run
    table = f"jammi_inventory_{uuid.uuid4().hex[:8]}"
    inventory = duckdb.connect(str(duck_project.root / "data/demo/inventory.duckdb"), read_only=True) \
        .execute("SELECT * FROM inventory").df()
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (sku text PRIMARY KEY, catalog_id bigint, item_name text, "
                    "brand text, on_hand bigint, warehouse text, unit_price double precision, "
                    "counted_at timestamp)")
        rows = [tuple(None if pd.isna(v) else (int(v) if k in ("catalog_id", "on_hand") else v)
                      for k, v in r.items()) for r in inventory.to_dict("records")]
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
    try:
        root = tmp_path / "pg"
        root.mkdir()
        project = demo_project(root, {"kind": "postgres", "dsn": PG_DSN, "table": table})
        assert project.sources["inventory"].kind == "postgres"
        run_fusion(project)
        pg = pd.read_parquet(project.artifact_dir / "frames" / "fused_product.parquet")
        duck = pd.read_parquet(duck_project.artifact_dir / "frames" / "fused_product.parquet")
        pd.testing.assert_frame_equal(pg, duck, check_dtype=False)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


def test_a_fused_entity_refreshes_like_a_source(tmp_path):
    """Nothing new: no entity text is re-embedded; a member's title changes: only that entity's
    row is re-embedded, as a new version of the same table."""
    project = demo_project(tmp_path)
    run_fusion(project)
    table = Catalog(project.artifact_dir).active(pipeline="product_entities").table_name

    def outcome(result) -> dict:
        meta = next(m for m in result.asset_materializations_for_node("product_entities_embeddings"))
        return {k: meta.metadata[k].value
                for k in ("outcome", "added", "changed", "rows_encoded", "table_name")}

    again = outcome(run_fusion(project))
    assert (again["outcome"], again["rows_encoded"], again["table_name"]) == ("no_change", 0, table)
    csv = project.root / "data" / "demo" / "products.csv"
    with open(csv, newline="", encoding="utf-8") as fh:
        rows = list(_csv.DictReader(fh))
    rows[0]["title"] = "Completely renamed showcase item"
    with open(csv, "w", newline="", encoding="utf-8") as fh:
        writer = _csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    changed = outcome(run_fusion(project))
    assert changed["outcome"] == "refreshed" and changed["table_name"] == table
    assert 1 <= changed["rows_encoded"] == changed["added"] + changed["changed"] <= 5
