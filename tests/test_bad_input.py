"""Bad input: each case fails (or degrades) with a readable error naming the source and the
field or key, and never leaves an embedding table marked ready."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from jammi.shared import frame_path
from jammi.silver.pandera_model import REASON_COLUMN
from jammi.tables.catalog import STATUS_BUILDING, STATUS_READY, Catalog
from tests.conftest import PRODUCT_COLUMNS, failure_message, materialize, ready_tables, write_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

PG_DSN = "postgresql://127.0.0.1:5432/test"
PIPELINE = {"products": {"source": "products", "text_columns": ["title", "body"]}}
HEADER = "id,title,body,price\n"


# tiny frames where most rows fail on purpose: let the conformance gate report, not block
LENIENT = {"schema_conformance": {"max_rate": 1.0}}


def csv_source(path: str = "data/products.csv", **extra) -> dict:
    return {"kind": "csv", "path": path, "key": "id", "columns": PRODUCT_COLUMNS, **extra}


def write_csv(root: Path, text: str, name: str = "products.csv") -> Path:
    path = root / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def frames_written(project) -> list[str]:
    frames = project.artifact_dir / "frames"
    return sorted(p.name for p in frames.glob("*.parquet")) if frames.is_dir() else []


def assert_failed_without_tables(project, result) -> str:
    assert not result.success
    message = failure_message(result)
    assert message, "the failed step has no error message"
    assert ready_tables(project) == []
    return message


def assert_nothing_written(project) -> None:
    written = frames_written(project)
    assert not [n for n in written if n.startswith(("raw_", "validated_", "quarantine_"))], written
    assert not list((project.artifact_dir / "jammi_db").glob("*.parquet"))


# --- the source cannot be read ----------------------------------------------------------


def test_missing_csv_file(tmp_path):
    project = write_project(tmp_path, {"products": csv_source("data/nope.csv")}, PIPELINE)
    result = materialize(project)
    message = assert_failed_without_tables(project, result)
    assert "source 'products'" in message
    assert "no file matches path 'data/nope.csv'" in message
    assert str(tmp_path / "data" / "nope.csv") in message
    assert_nothing_written(project)


def test_missing_postgres_table(tmp_path):
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL at {PG_DSN} is unreachable: {str(err).strip().splitlines()[0]}")
    table = f"public.jammi_missing_{uuid.uuid4().hex[:12]}"
    project = write_project(
        tmp_path,
        {"products": {"kind": "postgres", "dsn": PG_DSN, "table": table, "key": "id",
                      "columns": PRODUCT_COLUMNS}},
        PIPELINE,
    )
    result = materialize(project)
    message = assert_failed_without_tables(project, result)
    assert f"source 'products': PostgreSQL table {table!r} failed" in message
    assert "does not exist" in message
    assert table.split(".")[1] in message
    assert_nothing_written(project)


def test_declared_column_absent_from_file(tmp_path):
    write_csv(tmp_path, "id,title,price\n1,Shoes,10\n2,Skillet,20\n")
    project = write_project(tmp_path, {"products": csv_source()}, PIPELINE)
    result = materialize(project)
    message = assert_failed_without_tables(project, result)
    assert "source 'products'" in message
    assert "declared column(s) 'body' not found" in message
    assert "the source has: id, title, price" in message
    assert_nothing_written(project)


# --- keys -------------------------------------------------------------------------------


def test_null_keys_refuse_the_whole_run(tmp_path):
    write_csv(tmp_path, HEADER + "1,Shoes,Runners,10\n,Skillet,Iron,20\n3,Mat,Yoga,5\n"
                                 " ,Kettle,Steel,30\n5,Lamp,Desk,15\n")
    project = write_project(tmp_path, {"products": csv_source()}, PIPELINE)
    result = materialize(project)
    message = assert_failed_without_tables(project, result)
    assert "source 'products'" in message
    assert "key column 'id'" in message
    assert "has 2 null or empty value(s) out of 5 rows" in message
    assert "nothing was written" in message
    assert_nothing_written(project)


def test_duplicate_keys_are_listed_with_counts_at_most_ten(tmp_path):
    lines = [f"{k},Title {k},Body {k},1\n" for k in range(100, 112) for _ in range(2)]
    lines[0:0] = ["100,Title third copy,Body,1\n"]  # key 100 three times
    lines += [f"{k},Unique {k},Body,1\n" for k in range(500, 505)]
    write_csv(tmp_path, HEADER + "".join(lines))
    project = write_project(tmp_path, {"products": csv_source()}, PIPELINE)
    result = materialize(project)
    message = assert_failed_without_tables(project, result)
    assert "source 'products'" in message
    assert "key column 'id' has 12 duplicated key(s)" in message
    assert "'100' x3" in message
    listed = re.findall(r"'(\d+)' x(\d+)", message)
    assert len(listed) == 10
    assert all(k.startswith("1") and int(n) >= 2 for k, n in listed)
    assert "and 2 more" in message
    assert "500" not in message  # unique keys are not listed
    assert_nothing_written(project)


def test_few_duplicate_keys_listed_without_more(tmp_path):
    write_csv(tmp_path, HEADER + "1,a,b,1\n2,c,d,2\n1,e,f,3\n3,g,h,4\n")
    project = write_project(tmp_path, {"products": csv_source()}, PIPELINE)
    result = materialize(project)
    message = assert_failed_without_tables(project, result)
    assert "has 1 duplicated key(s): '1' x2;" in message
    assert "more" not in message
    assert_nothing_written(project)


# --- encodings --------------------------------------------------------------------------


def cp1252_csv(root: Path) -> Path:
    path = root / "data" / "products.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"id,title,body,price\n"
        b"1,Espresso,Crema every time,199\n"
        b"2,Caf\xe9 table,Oak top,80\n"
        b"3,Kettle,Steel,30\n"
    )
    return path


def test_non_utf8_bytes_name_source_file_line_and_suggest_encoding(tmp_path):
    cp1252_csv(tmp_path)
    project = write_project(tmp_path, {"products": csv_source()}, PIPELINE)
    result = materialize(project)
    message = assert_failed_without_tables(project, result)
    assert "source 'products'" in message
    assert "products.csv is not valid utf-8" in message
    assert "byte 0xe9" in message
    assert "(line 3)" in message
    assert "encoding: cp1252" in message
    assert_nothing_written(project)


def test_non_utf8_jsonl_names_the_line(tmp_path):
    path = tmp_path / "data" / "products.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"id": 1, "title": "a", "body": "b", "price": 1}\n'
                     b'{"id": 2, "title": "na\xefve", "body": "b", "price": 1}\n')
    project = write_project(
        tmp_path, {"products": csv_source("data/products.jsonl") | {"kind": "jsonl"}}, PIPELINE
    )
    result = materialize(project)
    message = assert_failed_without_tables(project, result)
    assert "source 'products': products.jsonl is not valid utf-8: byte 0xef" in message
    assert "(line 2)" in message


def test_declared_cp1252_encoding_loads(tmp_path):
    cp1252_csv(tmp_path)
    project = write_project(tmp_path, {"products": csv_source(encoding="cp1252")}, PIPELINE)
    result = materialize(project)
    assert result.success, failure_message(result)
    validated = pd.read_parquet(frame_path(project.artifact_dir, "validated_products"))
    assert validated["title"].tolist() == ["Espresso", "Café table", "Kettle"]
    [table] = ready_tables(project)
    assert table.rows_embedded == 3


# --- text and model ---------------------------------------------------------------------


def test_text_longer_than_model_window_is_truncated_not_an_error(tmp_path):
    long_body = " ".join(f"word{i}" for i in range(400))  # far beyond 256 tokens
    write_csv(
        tmp_path,
        HEADER
        + f"1,Long one,{long_body},1\n"
        + "2,Short,Small body,2\n"
        + f"3,Long two,{long_body} extra,3\n"
        + "4,Also short,Fine,4\n",
    )
    project = write_project(tmp_path, {"products": csv_source()}, PIPELINE)
    result = materialize(project)
    assert result.success, failure_message(result)

    [event] = [e for e in result.get_asset_materialization_events()
               if e.asset_key.to_user_string() == "products_embeddings"]
    metadata = event.materialization.metadata
    assert metadata["rows_truncated"].value == 2
    assert metadata["rows_embedded"].value == 4
    assert metadata["rows_failed"].value == 0

    [table] = ready_tables(project)
    assert table.rows_truncated == 2
    assert table.rows_embedded == 4
    emb = pq.read_table(table.parquet_path).to_pandas()
    assert sorted(emb["_row_id"]) == ["1", "2", "3", "4"]


def test_unknown_model_fails_naming_the_model_and_how_to_fix(tmp_path):
    write_csv(tmp_path, HEADER + "1,Shoes,Runners,10\n2,Skillet,Iron,20\n")
    model = "no-such-org/no-such-model-xyz"
    project = write_project(
        tmp_path, {"products": csv_source()},
        {"products": {"source": "products", "text_columns": ["title", "body"], "model": model}},
    )
    result = materialize(project)
    message = assert_failed_without_tables(project, result)
    assert f"model {model!r} could not be loaded" in message
    assert "local directory" in message
    assert "config.json" in message and "tokenizer.json" in message
    # the failure happens before any table is begun
    tables = Catalog(project.artifact_dir).tables()
    assert [t for t in tables if t.status in (STATUS_BUILDING, STATUS_READY)] == []
    assert tables == []
    assert not list((project.artifact_dir / "jammi_db").glob("*.parquet"))


def test_local_model_directory_missing_files(tmp_path):
    write_csv(tmp_path, HEADER + "1,Shoes,Runners,10\n")
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}", encoding="utf-8")
    project = write_project(
        tmp_path, {"products": csv_source()},
        {"products": {"source": "products", "text_columns": ["title"], "model": str(model_dir)}},
    )
    result = materialize(project)
    message = assert_failed_without_tables(project, result)
    assert f"model {str(model_dir)!r}" in message
    assert "lacks tokenizer.json, model.safetensors" in message
    assert Catalog(project.artifact_dir).tables() == []


# --- artifacts --------------------------------------------------------------------------


def test_artifact_dir_not_writable(tmp_path):
    write_csv(tmp_path, HEADER + "1,Shoes,Runners,10\n")
    (tmp_path / "blocker").write_text("a regular file, not a directory", encoding="utf-8")
    project = write_project(tmp_path, {"products": csv_source()}, PIPELINE,
                            artifact_dir="blocker/artifacts")
    result = materialize(project)
    message = assert_failed_without_tables(project, result)
    assert "source 'products'" in message
    assert "is not writable" in message
    assert str(tmp_path / "blocker" / "artifacts") in message
    assert "artifact_dir" in message
    assert (tmp_path / "blocker").is_file()


# --- row-level validation ---------------------------------------------------------------


def test_invalid_rows_go_to_quarantine_with_reasons(tmp_path):
    write_csv(
        tmp_path,
        HEADER
        + "1,Shoes,Runners,59.5\n"
        + "2,Skillet,Iron,-3\n"         # negative price
        + "3,Kettle,Steel,cheap\n"      # non-numeric price
        + "4,Mat,Yoga,25\n"
        + "5,Lamp,Desk,abc\n"           # non-numeric price
        + "6,Chair,Oak,0\n",
    )
    project = write_project(tmp_path, {"products": csv_source(quality=LENIENT)}, PIPELINE)
    result = materialize(project)
    assert result.success, failure_message(result)

    raw = pd.read_parquet(frame_path(project.artifact_dir, "raw_products"))
    validated = pd.read_parquet(frame_path(project.artifact_dir, "validated_products"))
    quarantine = pd.read_parquet(frame_path(project.artifact_dir, "quarantine_products"))

    assert len(raw) == 6
    assert len(validated) + len(quarantine) == len(raw)  # nothing lost
    assert validated["id"].tolist() == [1, 4, 6]
    assert validated["price"].tolist() == [59.5, 25.0, 0.0]
    assert sorted(quarantine["id"]) == ["2", "3", "5"]  # as extracted (text)

    reasons = dict(zip(quarantine["id"], quarantine[REASON_COLUMN], strict=True))
    assert reasons["2"].startswith("price:")
    assert "greater_than_or_equal_to(0.0)" in reasons["2"]
    assert "-3" in reasons["2"]
    for key, value in (("3", "cheap"), ("5", "abc")):
        assert reasons[key].startswith("price:")
        assert "Float64" in reasons[key]
        assert repr(value) in reasons[key]
    assert quarantine.loc[quarantine["id"] == "3", "price"].item() == "cheap"

    [event] = [e for e in result.get_asset_materialization_events()
               if e.asset_key.to_user_string() == "validated_products"]
    assert event.materialization.metadata["rows_quarantined"].value == 3

    [table] = ready_tables(project)
    assert table.rows_embedded == 3
    emb = pq.read_table(table.parquet_path).to_pandas()
    assert sorted(emb["_row_id"]) == ["1", "4", "6"]


def test_several_failing_columns_in_one_row_are_all_named(tmp_path):
    columns = {**PRODUCT_COLUMNS, "title": {"type": "str", "max_length": 5}}
    write_csv(tmp_path, HEADER + "1,Ok,a,1\n2,Far too long,b,-1\n3,Fine,c,2\n")
    project = write_project(
        tmp_path, {"products": csv_source(quality=LENIENT) | {"columns": columns}}, PIPELINE
    )
    result = materialize(project)
    assert result.success, failure_message(result)
    validated = pd.read_parquet(frame_path(project.artifact_dir, "validated_products"))
    quarantine = pd.read_parquet(frame_path(project.artifact_dir, "quarantine_products"))
    assert validated["id"].tolist() == [1, 3]
    assert quarantine["id"].tolist() == ["2"]
    reason = quarantine[REASON_COLUMN].item()
    assert "title:" in reason and "str_length" in reason
    assert "price:" in reason
