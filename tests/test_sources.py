"""Extraction of every source kind against data the tests write, and a real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from jammi.errors import SourceError
from jammi.ingest.extract import extract, source_files
from jammi.shared import frame_path
from tests.conftest import (
    PG_DSN,
    PRODUCT_COLUMNS,
    failure_message,
    materialize,
    pg_connect,
    ready_tables,
    write_project,
)

ROWS = [
    {"id": 1, "title": "Red running shoes", "body": "Light trail runners", "price": 59.5},
    {"id": 2, "title": "Espresso machine", "body": "Fifteen bar pump", "price": 199.0},
    {"id": 3, "title": "Cast iron skillet", "body": None, "price": 35.0},
    {"id": 4, "title": "Yoga mat", "body": "Non-slip mat", "price": 25.0},
    {"id": 5, "title": "Headphones", "body": "Wireless over-ear", "price": 149.0},
]


def source(kind: str, **extra) -> dict:
    return {"kind": kind, "key": "id", "columns": PRODUCT_COLUMNS, **extra}


def assert_rows(df: pd.DataFrame, rows: list[dict]) -> None:
    """Values match (as text, since file sources are read untyped)."""
    assert len(df) == len(rows)
    for col in ("id", "title", "body", "price"):
        assert col in df.columns
    by_id = {str(r["id"]): r for r in rows}
    assert sorted(df["id"].astype(str)) == sorted(by_id)
    for rec in df.to_dict("records"):
        want = by_id[str(rec["id"])]
        assert rec["title"] == want["title"]
        if want["body"] is None:
            assert rec["body"] is None or pd.isna(rec["body"])
        else:
            assert rec["body"] == want["body"]
        assert float(rec["price"]) == pytest.approx(want["price"])


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


# --- files ------------------------------------------------------------------------------


def test_csv(tmp_path, products_csv):
    project = write_project(tmp_path, {"products": source("csv", path="data/products.csv")})
    df = extract(project, "products")
    assert list(df.columns) == ["id", "title", "body", "price"]
    assert df["id"].tolist() == ["1", "2", "3", "4", "5", "6"]  # untyped until validation
    assert df.loc[0, "title"] == "Red running shoes"
    assert df.loc[1, "price"] == "199"
    assert pd.isna(df.loc[2, "body"])  # empty cell is null, not ""
    assert pd.isna(df.loc[3, "title"])


def test_csv_with_delimiter_and_literal_na_text(tmp_path):
    path = tmp_path / "data" / "semi.csv"
    path.parent.mkdir(parents=True)
    path.write_text("id;title;body;price\n1;NA;None;1.5\n2;b;c, with comma;2\n", encoding="utf-8")
    project = write_project(
        tmp_path, {"products": source("csv", path="data/semi.csv", delimiter=";")}
    )
    df = extract(project, "products")
    assert df["id"].tolist() == ["1", "2"]
    # "NA" and "None" are text here, not nulls
    assert df.loc[0, "title"] == "NA"
    assert df.loc[0, "body"] == "None"
    assert df.loc[1, "body"] == "c, with comma"


def test_parquet(tmp_path):
    write_parquet(tmp_path / "data" / "products.parquet", ROWS)
    project = write_project(tmp_path, {"products": source("parquet", path="data/products.parquet")})
    df = extract(project, "products")
    assert_rows(df, ROWS)
    assert df["id"].tolist() == [1, 2, 3, 4, 5]


def test_jsonl(tmp_path):
    write_jsonl(tmp_path / "data" / "products.jsonl", ROWS)
    project = write_project(tmp_path, {"products": source("jsonl", path="data/products.jsonl")})
    df = extract(project, "products")
    assert_rows(df, ROWS)


def test_jsonl_glob_reads_every_part_in_order(tmp_path):
    parts = tmp_path / "data" / "parts"
    write_jsonl(parts / "part-002.jsonl", ROWS[2:4])
    write_jsonl(parts / "part-001.jsonl", ROWS[:2])
    write_jsonl(parts / "part-003.jsonl", ROWS[4:])
    (parts / "empty.jsonl").write_text("\n", encoding="utf-8")  # an empty part is fine
    (parts / "notes.txt").write_text("not a part", encoding="utf-8")
    project = write_project(tmp_path, {"products": source("jsonl", path="data/parts/*.jsonl")})

    files = source_files(project, "products", project.sources["products"])
    assert [f.name for f in files] == ["empty.jsonl", "part-001.jsonl", "part-002.jsonl",
                                       "part-003.jsonl"]
    df = extract(project, "products")
    assert_rows(df, ROWS)
    assert [int(v) for v in df["id"]] == [1, 2, 3, 4, 5]
    assert df.index.tolist() == [0, 1, 2, 3, 4]


def test_csv_glob_of_several_files(tmp_path):
    write_csv(tmp_path / "data" / "a" / "one.csv", ROWS[:3])
    write_csv(tmp_path / "data" / "b" / "two.csv", ROWS[3:])
    project = write_project(tmp_path, {"products": source("csv", path="data/**/*.csv")})
    df = extract(project, "products")
    assert_rows(df, ROWS)
    assert df["id"].tolist() == ["1", "2", "3", "4", "5"]


def test_glob_duplicate_key_across_files_is_refused(tmp_path):
    write_jsonl(tmp_path / "data" / "p1.jsonl", ROWS[:3])
    write_jsonl(tmp_path / "data" / "p2.jsonl", ROWS[2:])
    project = write_project(tmp_path, {"products": source("jsonl", path="data/p*.jsonl")})
    with pytest.raises(SourceError, match=r"source 'products'.*'3' x2"):
        extract(project, "products")


def test_glob_matching_nothing(tmp_path):
    project = write_project(tmp_path, {"products": source("jsonl", path="data/*.jsonl")})
    with pytest.raises(SourceError) as info:
        extract(project, "products")
    assert "source 'products'" in str(info.value)
    assert "no file matches path 'data/*.jsonl'" in str(info.value)


def test_duckdb_query_over_relative_parquet(tmp_path, monkeypatch):
    write_parquet(tmp_path / "data" / "items.parquet", ROWS)
    monkeypatch.chdir(Path("/"))  # the path must resolve against the project, not the cwd
    query = (
        "SELECT id, upper(title) AS title, body, price * 2 AS price "
        "FROM read_parquet('data/items.parquet') WHERE price < 150 ORDER BY id"
    )
    project = write_project(tmp_path, {"products": source("duckdb", query=query)})
    df = extract(project, "products")
    assert df["id"].tolist() == [1, 3, 4, 5]
    assert df["title"].tolist() == ["RED RUNNING SHOES", "CAST IRON SKILLET", "YOGA MAT",
                                    "HEADPHONES"]
    assert df["price"].tolist() == [119.0, 70.0, 50.0, 298.0]


def test_duckdb_query_with_bare_relative_file(tmp_path, monkeypatch):
    write_parquet(tmp_path / "data" / "items.parquet", ROWS)
    monkeypatch.chdir(Path("/"))
    project = write_project(
        tmp_path, {"products": source("duckdb", query="SELECT * FROM 'data/items.parquet'")}
    )
    assert_rows(extract(project, "products"), ROWS)


def test_duckdb_query_error_names_the_source(tmp_path):
    project = write_project(
        tmp_path,
        {"products": source("duckdb", query="SELECT * FROM read_parquet('data/missing.parquet')")},
    )
    with pytest.raises(SourceError) as info:
        extract(project, "products")
    assert "source 'products': DuckDB query failed" in str(info.value)
    assert "missing.parquet" in str(info.value)


def test_duckdb_table_in_a_database_file(tmp_path, monkeypatch):
    import duckdb

    write_parquet(tmp_path / "data" / "items.parquet", ROWS)
    with duckdb.connect(str(tmp_path / "data" / "shop.duckdb")) as con:
        con.execute(f"CREATE TABLE items AS SELECT * FROM read_parquet('{tmp_path}/data/items.parquet')")
    monkeypatch.chdir(Path("/"))
    spec = source("duckdb", database="data/shop.duckdb", table="items")
    spec.pop("query", None)
    project = write_project(tmp_path, {"products": spec})
    assert_rows(extract(project, "products"), ROWS)
    missing = write_project(tmp_path, {"products": {**spec, "database": "data/nope.duckdb"}})
    with pytest.raises(SourceError, match="DuckDB database 'data/nope.duckdb' not found"):
        extract(missing, "products")


def test_duckdb_table_needs_a_database(tmp_path):
    from jammi.errors import ConfigError

    spec = source("duckdb", table="items")
    spec.pop("query", None)
    with pytest.raises(ConfigError, match="with 'table' needs 'database'"):
        write_project(tmp_path, {"products": spec})


# --- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture
def pg_table():
    """A uniquely named table in schema public holding ROWS; dropped afterwards."""
    conn = pg_connect()
    name = f"jammi_test_{uuid.uuid4().hex[:12]}"
    conn.execute(
        f'CREATE TABLE public."{name}" (id integer PRIMARY KEY, title text, body text, '
        "price numeric(10, 2))"
    )
    with conn.cursor() as cur:
        cur.executemany(
            f'INSERT INTO public."{name}" (id, title, body, price) VALUES (%s, %s, %s, %s)',
            [(r["id"], r["title"], r["body"], r["price"]) for r in ROWS],
        )
    try:
        yield name
    finally:
        conn.execute(f'DROP TABLE IF EXISTS public."{name}"')
        conn.close()


def test_postgres_table(tmp_path, pg_table):
    project = write_project(tmp_path, {"products": source("postgres", dsn=PG_DSN, table=pg_table)})
    df = extract(project, "products")
    assert_rows(df, ROWS)
    assert sorted(df["id"].tolist()) == [1, 2, 3, 4, 5]


def test_postgres_schema_qualified_table(tmp_path, pg_table):
    project = write_project(
        tmp_path, {"products": source("postgres", dsn=PG_DSN, table=f"public.{pg_table}")}
    )
    assert_rows(extract(project, "products"), ROWS)


def test_postgres_table_name_is_quoted_as_an_identifier(tmp_path):
    """A mixed-case name keeps its case: it is quoted, not folded or interpolated."""
    conn = pg_connect()
    name = f"Jammi_Test_{uuid.uuid4().hex[:8]}"
    conn.execute(f'CREATE TABLE public."{name}" (id integer, title text, body text, price real)')
    try:
        conn.execute(f'INSERT INTO public."{name}" VALUES (7, %s, %s, 1.5)',
                     ("it's quoted", 'say "hi"'))
        project = write_project(
            tmp_path, {"products": source("postgres", dsn=PG_DSN, table=f"public.{name}")}
        )
        df = extract(project, "products")
        assert df.to_dict("records") == [
            {"id": 7, "title": "it's quoted", "body": 'say "hi"', "price": 1.5}
        ]
    finally:
        conn.execute(f'DROP TABLE IF EXISTS public."{name}"')
        conn.close()


def test_postgres_query(tmp_path, pg_table):
    query = (
        f'SELECT id, title, body, price FROM public."{pg_table}" '
        "WHERE price >= 50 ORDER BY id"
    )
    project = write_project(tmp_path, {"products": source("postgres", dsn=PG_DSN, query=query)})
    df = extract(project, "products")
    assert df["id"].tolist() == [1, 2, 5]
    assert df["title"].tolist() == ["Red running shoes", "Espresso machine", "Headphones"]
    assert [float(p) for p in df["price"]] == [59.5, 199.0, 149.0]


def test_postgres_query_error_names_the_source(tmp_path, pg_table):
    query = f'SELECT id, nosuchcol FROM public."{pg_table}"'
    project = write_project(tmp_path, {"products": source("postgres", dsn=PG_DSN, query=query)})
    with pytest.raises(SourceError) as info:
        extract(project, "products")
    assert "source 'products': PostgreSQL query failed" in str(info.value)
    assert "nosuchcol" in str(info.value)


@pytest.mark.slow
def test_postgres_source_materializes_through_embeddings(tmp_path, pg_table):
    project = write_project(
        tmp_path,
        {"products": source("postgres", dsn=PG_DSN, table=f"public.{pg_table}")},
        {"products": {"source": "products", "text_columns": ["title", "body"]}},
    )
    result = materialize(project)
    assert result.success, failure_message(result)

    ready = ready_tables(project)
    assert len(ready) == 1
    table = ready[0]
    assert table.source == "products"
    assert table.pipeline == "products"
    assert table.rows_embedded == len(ROWS)
    assert table.rows_skipped == 0

    emb = pq.read_table(table.parquet_path).to_pandas()
    assert sorted(emb["_row_id"]) == ["1", "2", "3", "4", "5"]
    assert set(emb["_source_id"]) == {"products"}
    assert all(len(v) == 384 for v in emb["vector"])

    validated = pd.read_parquet(frame_path(project.artifact_dir, "validated_products"))
    assert len(validated) == len(ROWS)
    assert validated["price"].tolist() == [59.5, 199.0, 35.0, 25.0, 149.0]
    quarantine = pd.read_parquet(frame_path(project.artifact_dir, "quarantine_products"))
    assert len(quarantine) == 0

    index = project.artifact_dir / "jammi_db" / f"{table.table_name}.usearch"
    assert index.is_file() and index.stat().st_size > 0
