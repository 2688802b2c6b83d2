"""A project whose `artifact_dir` is an object-store URL (`s3://bucket/prefix`, on a real
SeaweedFS server) with its catalog in the local PostgreSQL: the embedding tables (segments,
deletion files, sidecars, row maps, manifests) and the asset frames are objects under the URL,
this node keeps only its own folder (published jammi.duckdb, locks, memos, fetched sidecars),
and the CLI builds, refreshes, searches, queries and verifies the table, which equals a local
build of the same data. A second node reads the tables (`jammi sql`) and searches them with the
source's columns (tests/test_nodes_share_no_disk.py runs two processes). The same build,
search, query and verify run on `gs://` (the GCS emulator, reached through
STORAGE_EMULATOR_HOST). Without a PostgreSQL catalog, a URL artifact_dir is one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from jammi import store
from jammi.errors import ConfigError
from jammi.spec.project import load_project
from jammi.tables.catalog import Catalog
from jammi.tables.versions import read_current
from tests.conftest import PG_DSN, invoke_cli, new_bucket

ROWS = ["1,Red running shoes,Light trail runners", "2,Espresso machine,Fifteen bar pump",
        "3,Cast iron skillet,Heavy and even heat", "4,Yoga mat,Non-slip mat for workouts",
        "5,Trail backpack,Thirty litre pack for day hikes", "6,Rain jacket,Waterproof shell"]


@pytest.fixture
def bucket(s3_env) -> str:
    return new_bucket(s3_env)


def write_project(root: Path, csv: Path, artifact_dir: str, schema: str | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    doc: dict = {"artifact_dir": artifact_dir,
                 "sources": {"products": {"kind": "csv", "path": str(csv), "key": "id",
                                          "columns": {"id": "int", "title": "str", "body": "str"}}},
                 "pipelines": {"products_pipe": {"source": "products", "text_columns": ["title", "body"]}}}
    if schema is not None:
        doc["catalog"] = {"postgres": "${JAMMI_CATALOG_DSN}", "schema": schema}
    path = root / "jammi.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def cli(path: Path, *args: str) -> str:
    res = invoke_cli(["--project", str(path), *args])
    assert res.exit_code == 0, res.output
    return res.output


def table_rows(path: Path) -> dict[str, np.ndarray]:
    """_row_id -> vector of the pipeline's active table, read through the storage layer."""
    catalog = Catalog(load_project(path).artifact_dir)
    snap = catalog.snapshot("products_pipe")
    table = read_current(snap.active.tables_dir, snap.version, ["vector"])
    return {k: np.asarray(v, dtype=np.float32) for k, v in
            zip(table.column("_row_id").to_pylist(), table.column("vector").to_pylist(), strict=True)}


def test_a_url_artifact_dir_without_a_postgres_catalog_is_one_clear_error(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("id,title,body\n1,a,b\n", encoding="utf-8")
    path = write_project(tmp_path / "proj", csv, "s3://bucket/prefix", None)
    with pytest.raises(ConfigError, match=r"artifact_dir 's3://bucket/prefix' is an object-store URL, "
                                          r"which needs `catalog: \{postgres: \.\.\.\}`"):
        load_project(path)
    res = invoke_cli(["--project", str(path), "status"])
    assert res.exit_code != 0 and "needs `catalog: {postgres: ...}`" in res.output


def test_a_url_artifact_dir_keeps_its_node_folder_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAMMI_CATALOG_DSN", PG_DSN)
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))
    csv = tmp_path / "p.csv"
    csv.write_text("id,title,body\n1,a,b\n", encoding="utf-8")
    project = load_project(write_project(tmp_path / "proj", csv, "s3://bucket/team/prefix/", "jammi_unused"))
    assert project.artifact_url == "s3://bucket/team/prefix"
    assert project.artifact_dir == store.node_dir("s3://bucket/team/prefix")
    assert project.artifact_dir.is_relative_to(tmp_path / "cache" / "nodes")


@pytest.mark.slow
def test_build_refresh_search_sql_verify_on_s3_equal_a_local_build(bucket, schema, tmp_path, monkeypatch):
    monkeypatch.setenv("JAMMI_CATALOG_DSN", PG_DSN)
    csv = tmp_path / "p.csv"
    csv.write_text("id,title,body\n" + "\n".join(ROWS[:4]) + "\n", encoding="utf-8")
    url = f"s3://{bucket}/team/products"
    remote = write_project(tmp_path / "remote", csv, url, schema)

    cli(remote, "materialize")
    # a change, an addition and a deletion: the refresh commits version 1 as new objects
    csv.write_text("id,title,body\n" + "\n".join([ROWS[0], "2,Espresso grinder,Burr grinder", *ROWS[2:3],
                                                  *ROWS[4:]]) + "\n", encoding="utf-8")
    out = cli(remote, "materialize")
    assert "outcome=refreshed" in out, out
    assert cli(remote, "sql", "SELECT count(*) AS n FROM jammi.products_pipe_embeddings", "--format", "csv"
               ).split() == ["n", "5"]
    hits = cli(remote, "search", "products_pipe", "backpack for hiking", "-k", "1", "--format", "csv")
    assert "Trail backpack" in hits
    fetched = [p.name for p in (store.cache_dir() / "objects").iterdir()]  # sidecars, memory-mapped here
    assert any(n.endswith(".usearch") for n in fetched) and any(n.endswith(".rowmap") for n in fetched)
    cli(remote, "verify")  # exits 1 on any difference between source, table and index

    names = [store.name_of(p) for p in store.listdir(f"{url}/jammi_db")]
    for suffix in (".parquet", ".usearch", ".rowmap", ".manifest.json", ".deletes.parquet"):
        assert any(n.endswith(suffix) for n in names), (suffix, names)
    assert "validated_products.parquet" in [store.name_of(p) for p in store.listdir(f"{url}/frames")]
    node = load_project(remote).artifact_dir
    assert (node / "jammi.duckdb").exists() and not (node / "jammi_db").exists()
    assert not (node / "frames").exists()
    assert not any(p.name.endswith(".tmp") for p in (store.cache_dir() / "spool").glob("*"))

    # the other verbs over the URL: status, tables, compaction (new objects), expiry (deletes
    # the objects only old versions named), recover
    assert f"catalog: postgres 127.0.0.1:5432/test (schema {schema})" in cli(remote, "status")
    versions = cli(remote, "tables", "versions", "products_pipe", "--format", "json")
    assert '"version":1' in versions.replace(" ", "")
    cli(remote, "tables", "compact", "products_pipe")
    expired = cli(remote, "tables", "expire", "products_pipe", "--keep", "1")
    assert " 0 file(s)" not in expired and "file(s) deleted" in expired, expired
    assert not any(store.name_of(p).endswith(".deletes.parquet") for p in store.listdir(f"{url}/jammi_db"))
    cli(remote, "recover")
    assert cli(remote, "sql", "SELECT count(*) AS n FROM jammi.products_pipe_embeddings", "--format", "csv"
               ).split() == ["n", "5"]
    assert "Trail backpack" in cli(remote, "search", "products_pipe", "backpack for hiking", "-k", "1")
    cli(remote, "verify")

    # a second node, its own empty cache folder, sharing only the bucket and PostgreSQL: it reads
    # the tables, and the validated frame under the URL for the source's columns
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "node-2"))
    assert cli(remote, "sql", "SELECT count(*) AS n FROM jammi.products_pipe_embeddings", "--format", "csv"
               ).split() == ["n", "5"]
    assert "Trail backpack" in cli(remote, "search", "products_pipe", "backpack for hiking", "-k", "1")
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "node-cache"))

    local = write_project(tmp_path / "local", csv, "artifacts", None)
    cli(local, "materialize")
    on_s3, on_disk = table_rows(remote), table_rows(local)
    assert sorted(on_s3) == sorted(on_disk) == ["1", "2", "3", "5", "6"]
    assert max(float(np.abs(on_s3[k] - on_disk[k]).max()) for k in on_disk) <= 1e-5


@pytest.mark.slow
def test_build_search_sql_verify_on_gcs(gcs_env, schema, tmp_path, monkeypatch):
    """A project whose artifact_dir is `gs://bucket/prefix`: built, queried, searched and
    verified with its tables and frames as objects in the (emulated) bucket."""
    monkeypatch.setenv("JAMMI_CATALOG_DSN", PG_DSN)
    csv = tmp_path / "p.csv"
    csv.write_text("id,title,body\n" + "\n".join(ROWS[:4]) + "\n", encoding="utf-8")
    url = f"gs://{new_bucket(gcs_env)}/team/products"
    remote = write_project(tmp_path / "remote", csv, url, schema)

    assert "outcome=" in cli(remote, "materialize")
    assert cli(remote, "sql", "SELECT count(*) AS n FROM jammi.products_pipe_embeddings", "--format", "csv"
               ).split() == ["n", "4"]
    hits = cli(remote, "search", "products_pipe", "coffee maker", "-k", "1", "--format", "csv")
    assert "Espresso machine" in hits, hits
    cli(remote, "verify")  # exits 1 on any difference between source, table and index

    names = [store.name_of(p) for p in store.listdir(f"{url}/jammi_db")]
    for suffix in (".parquet", ".usearch", ".rowmap", ".manifest.json"):
        assert any(n.endswith(suffix) for n in names), (suffix, names)
    assert "validated_products.parquet" in [store.name_of(p) for p in store.listdir(f"{url}/frames")]
    fetched = [p.name for p in (store.cache_dir() / "objects").iterdir()]
    assert any(n.endswith(".usearch") for n in fetched)
    assert not (load_project(remote).artifact_dir / "jammi_db").exists()
