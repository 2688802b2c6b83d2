"""End to end on a small copy of the demo project: the path `make demo` takes (the CLI
runner on a persistent local instance), then the embedding-table contract, the DuckDB
views and search, checked on the files it wrote."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from jammi.app.facade import Jammi
from jammi.cli import cli
from jammi.demo.generate import write_demo
from jammi.embedding.texts import compose_texts, content_hash
from jammi.spec.project import DEFAULT_MODEL, load_project
from jammi.tables.catalog import Catalog
from jammi.tables.contract import sidecar
from jammi_assets.runner import run_materialization
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

PRODUCTS = 120


@pytest.fixture(scope="module")
def demo(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("demo")
    write_demo(root / "data" / "demo", products=PRODUCTS)
    shutil.copy(REPO / "jammi.yaml", root / "jammi.yaml")
    monkeypatch_module.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    (root / "dagster_home").mkdir()
    monkeypatch_module.chdir(root)
    project = load_project(root / "jammi.yaml")
    lines: list[str] = []
    outcome = run_materialization(project, [], echo=lines.append)
    return project, outcome, lines


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_every_asset_materializes_with_metadata(demo):
    project, outcome, lines = demo
    assert outcome.success, outcome.error
    by_asset = {row["asset"]: row["metadata"] for row in outcome.summary}
    sources = ("products", "reviews", "inventory", "partners", "reports")
    pipelines = ("products", "reviews", "product_entities", "reports")
    assert set(by_asset) == {
        f"{prefix}_{s}" for s in sources for prefix in ("raw", "validated", "quarantine")
    } | {f"{p}_{suffix}" for p in pipelines for suffix in ("embeddings", "ann_index")} | {
        "quality_report", "fused_product", "fused_product_provenance", "fused_product_links",
        "chunks_reports",
    }
    fused = by_asset["fused_product"]
    assert fused["records"] == sum(by_asset[f"validated_{s}"]["dagster/row_count"]
                                   for s in ("products", "inventory", "partners"))
    assert 0 < fused["dagster/row_count"] < fused["records"]
    assert by_asset["raw_products"]["dagster/row_count"] == PRODUCTS
    validated = by_asset["validated_products"]["dagster/row_count"]
    quarantined = by_asset["quarantine_products"]["dagster/row_count"]
    assert validated + quarantined == PRODUCTS and quarantined > 0  # nothing lost
    emb = by_asset["products_embeddings"]
    assert emb["model"] == DEFAULT_MODEL and emb["dimensions"] == 384
    assert emb["rows_embedded"] + emb["rows_skipped"] + emb["rows_failed"] == validated
    assert emb["rows_per_second"] > 0
    assert "preview" in by_asset["validated_products"]
    assert any("products_embeddings" in line and "embedded" in line for line in lines)


def test_demo_chunks_its_reports_and_ranks_them_by_best_chunk(demo):
    project, outcome, _ = demo
    by_asset = {row["asset"]: row["metadata"] for row in outcome.summary}
    chunks = by_asset["chunks_reports"]
    assert chunks["documents"] == 12 and chunks["dagster/row_count"] > 12  # several chunks per report
    rec = Catalog(project.artifact_dir).active(pipeline="reports")
    table = pq.read_table(rec.parquet_path)
    assert table.schema.names == ["_row_id", "_source_id", "_model_id", "vector", "_content_hash", "_doc_id"]
    assert table.num_rows == chunks["dagster/row_count"]
    docs = Jammi(project, recover_on_open=False).search("reports", "cider from the orchard", k=3,
                                                        documents=True)
    assert docs["doc_id"].is_unique and len(docs) == 3 and "orchard" in docs["text"][0].lower()


def test_embedding_parquet_honours_the_contract(demo):
    project, outcome, _ = demo
    rec = Catalog(project.artifact_dir).newest_ready(pipeline="products")
    assert rec.parquet_path.parent == project.artifact_dir / "jammi_db"
    assert rec.table_name.startswith("products__embedding__all-MiniLM-L6-v2__")
    for suffix in (".usearch", ".rowmap", ".manifest.json"):
        assert sidecar(rec.base_path, suffix).exists()
    table = pq.read_table(rec.parquet_path)
    assert table.schema.names == ["_row_id", "_source_id", "_model_id", "vector", "_content_hash"]
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 384)
    # DuckDB reads the file directly; norms are 1 within 1e-5
    norms = duckdb.sql(
        f"SELECT sqrt(list_inner_product(vector, vector)) AS n, len(vector) AS d "
        f"FROM read_parquet('{rec.parquet_path}')"
    ).fetchnumpy()
    assert np.all(np.abs(norms["n"] - 1.0) <= 1e-5)
    assert set(norms["d"].tolist()) == {384}
    # every validated row with text is embedded once; empty ones are counted, not written
    validated = duckdb.sql(
        f"SELECT * FROM read_parquet('{project.artifact_dir / 'frames' / 'validated_products.parquet'}')"
    ).df()
    texts = compose_texts(validated, ["title", "description"])
    expected = {str(k): t for k, t in zip(validated["product_id"], texts, strict=True) if t is not None}
    assert sorted(table["_row_id"].to_pylist()) == sorted(expected)
    assert rec.rows_skipped == len(validated) - len(expected) > 0
    assert set(table["_source_id"].to_pylist()) == {"products"}
    row = table.slice(0, 1).to_pylist()[0]
    assert row["_content_hash"] == content_hash(DEFAULT_MODEL, expected[row["_row_id"]])


def test_views_answer_sql_from_any_duckdb_client(demo):
    project, _, _ = demo
    con = duckdb.connect(str(project.artifact_dir / "jammi.duckdb"), read_only=True)
    try:
        n_emb = con.execute("SELECT count(*) FROM jammi.products_embeddings").fetchone()[0]
        n_latest = con.execute("SELECT count(*) FROM jammi.products_latest_embeddings").fetchone()[0]
        n_val = con.execute("SELECT count(*) FROM jammi.validated_products").fetchone()[0]
        reasons = con.execute("SELECT _quarantine_reason FROM jammi.quarantine_products").fetchall()
        status = con.execute(
            "SELECT status FROM jammi.embedding_status WHERE pipeline = 'reviews'"
        ).fetchall()
    finally:
        con.close()
    rec = Catalog(project.artifact_dir).newest_ready(pipeline="products")
    assert n_emb == n_latest == rec.rows_embedded
    assert n_val == PRODUCTS - len(reasons)
    assert all(("price" in r or "updated_at" in r) for (r,) in reasons)
    assert status == [("ready",)]
    result = CliRunner().invoke(
        cli, ["--project", str(project.path), "sql", "SELECT count(*) AS n FROM jammi.raw_products",
              "--format", "csv"]
    )
    assert result.exit_code == 0 and result.output.strip().splitlines() == ["n", str(PRODUCTS)]


def test_search_ann_matches_exact_and_survives_lost_sidecars(demo):
    project, _, _ = demo
    jammi = Jammi(project)
    ann = jammi.search("products", "espresso machine for a small kitchen", k=5)
    exact = jammi.search("products", "espresso machine for a small kitchen", k=5, exact=True)
    assert list(ann.columns) == [*project.sources["products"].columns, "_row_id", "similarity"]
    assert ann["_row_id"].tolist() == exact["_row_id"].tolist()
    assert np.allclose(ann["similarity"], exact["similarity"], atol=1e-4)
    assert "Espresso" in ann["title"].iloc[0]
    rec = Catalog(project.artifact_dir).newest_ready(pipeline="products")
    index_file = sidecar(rec.base_path, ".usearch")
    saved = index_file.read_bytes()
    try:
        index_file.write_bytes(b"not an index")
        corrupt = jammi.search("products", "espresso machine for a small kitchen", k=5)
        index_file.unlink()
        missing = jammi.search("products", "espresso machine for a small kitchen", k=5)
    finally:
        index_file.write_bytes(saved)
    assert corrupt["_row_id"].tolist() == missing["_row_id"].tolist() == exact["_row_id"].tolist()


def test_search_filter_select_and_row_key(demo):
    project, _, _ = demo
    jammi = Jammi(project)
    cheap = jammi.search("products", "kitchen gear", k=5, filter="price < 100 AND category = 'kitchen'",
                         select=["title", "price"])
    assert list(cheap.columns) == ["title", "price", "_row_id", "similarity"]
    assert len(cheap) > 0 and (cheap["price"] < 100).all()
    assert cheap["similarity"].is_monotonic_decreasing
    anchor = cheap["_row_id"].iloc[0]
    similar = jammi.search("products", row_key=anchor, k=3)
    assert anchor not in similar["_row_id"].tolist() and len(similar) == 3
    rec = Catalog(project.artifact_dir).newest_ready(pipeline="products")
    vec = pq.read_table(rec.parquet_path).filter(
        pa.compute.equal(pa.compute.field("_row_id"), anchor)
    )["vector"][0].as_py()
    by_vector = jammi.search("products", vector=vec, k=4)
    assert by_vector["_row_id"].iloc[0] == anchor
    assert by_vector["_row_id"].tolist()[1:] == similar["_row_id"].tolist()
    from jammi.errors import SearchError

    with pytest.raises(SearchError, match="filter"):
        jammi.search("products", "x", filter="no_such_column > 1")


def test_new_tables_coexist_and_search_uses_the_newest(demo):
    project, _, _ = demo
    catalog = Catalog(project.artifact_dir)
    first = catalog.newest_ready(pipeline="reviews")
    outcome = run_materialization(project, ["reviews_embeddings"], echo=lambda _l: None, full=True)
    assert outcome.success, outcome.error
    tables = catalog.tables(pipeline="reviews", status="ready")
    assert len(tables) == 2 and tables[1].table_name == first.table_name
    newest = tables[0]
    assert newest.created_at >= first.created_at and newest.table_name != first.table_name
    assert first.parquet_path.exists() and newest.parquet_path.exists()
    jammi = Jammi(project)
    assert jammi.sql("SELECT count(*) AS n FROM jammi.reviews_embeddings")["n"][0] == newest.rows_embedded
    # the new table has no index yet (only its embeddings were selected): exact fallback
    hits = jammi.search("reviews", "broke after a week", k=3)
    old = jammi.search("reviews", "broke after a week", k=3, table=first.table_name, exact=True)
    # same texts, same model: same scores (reviews repeat texts, so tied keys may swap places)
    assert np.allclose(hits["similarity"], old["similarity"], atol=1e-5)
    assert jammi.sql(f'SELECT count(*) AS n FROM jammi."{first.table_name}"')["n"][0] == first.rows_embedded


def test_cli_search_and_status_formats(demo):
    project, _, _ = demo
    runner = CliRunner()
    res = runner.invoke(cli, ["--project", str(project.path), "search", "products", "yoga mat",
                              "-k", "2", "--select", "title", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert '"similarity"' in res.output and '"title"' in res.output
    res = runner.invoke(cli, ["--project", str(project.path), "status", "--format", "csv"])
    assert res.exit_code == 0 and "ready" in res.output
    res = runner.invoke(cli, ["--project", str(project.path), "search", "nope", "x"])
    assert res.exit_code == 1 and res.output.startswith("error: unknown source or pipeline 'nope'")
    res = runner.invoke(cli, ["--project", str(Path(project.root) / "missing.yaml"), "status"])
    assert res.exit_code == 1 and "project file not found" in res.output
