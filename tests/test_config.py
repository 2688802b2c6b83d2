"""jammi.yaml validation: every problem names the file, the field path and what is wrong."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import dagster as dg
import pytest
import yaml

from jammi.errors import ConfigError
from jammi.spec.project import DEFAULT_MODEL, PROJECT_ENV, load_project, parse_project
from jammi_assets import definitions as definitions_module
from jammi_assets.definitions import build_definitions

REPO = Path(__file__).resolve().parents[1]

VALID = {
    "artifact_dir": "artifacts",
    "sources": {
        "products": {
            "kind": "csv",
            "path": "data/products.csv",
            "key": "id",
            "columns": {
                "id": "int",
                "title": "str",
                "body": {"type": "str", "max_length": 500},
                "price": {"type": "float", "ge": 0},
            },
        },
    },
    "pipelines": {
        "products": {"source": "products", "text_columns": ["title", "body"]},
    },
}


def valid_doc() -> dict:
    return copy.deepcopy(VALID)


def write_yaml(tmp_path: Path, doc, name: str = "jammi.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def load_error(tmp_path: Path, doc) -> str:
    path = write_yaml(tmp_path, doc)
    with pytest.raises(ConfigError) as info:
        load_project(path)
    message = str(info.value)
    assert str(path) in message, message
    return message


# --- valid files ------------------------------------------------------------------------


def test_valid_file_loads_with_types_defaults_and_relative_paths(tmp_path):
    path = write_yaml(tmp_path, valid_doc())
    project = load_project(path)

    assert project.path == path.resolve()
    assert project.root == path.resolve().parent
    assert project.artifact_dir == path.resolve().parent / "artifacts"

    src = project.sources["products"]
    assert src.kind == "csv"
    assert src.key == "id"
    assert src.encoding == "utf-8"
    assert src.delimiter == ","
    assert list(src.columns) == ["id", "title", "body", "price"]
    # the shorthand `id: int` means {type: int}; nullable defaults to true
    assert src.columns["id"].type == "int"
    assert src.columns["id"].nullable is True
    assert src.columns["body"].max_length == 500
    assert src.columns["price"].type == "float"
    assert src.columns["price"].ge == 0
    assert project.resolve(src.path) == path.resolve().parent / "data" / "products.csv"

    pipe = project.pipelines["products"]
    assert pipe.source == "products"
    assert pipe.text_columns == ["title", "body"]
    assert pipe.model == DEFAULT_MODEL
    assert pipe.batch_size == "auto"  # calibrated by each build
    assert pipe.backend == "torch"
    assert pipe.index.metric == "cos"
    assert project.pipelines_of("products") == {"products": pipe}


def test_parse_project_accepts_a_mapping_and_keeps_the_path(tmp_path):
    path = tmp_path / "somewhere" / "jammi.yaml"
    project = parse_project(valid_doc(), path)
    assert project.path == path
    assert project.artifact_dir == tmp_path / "somewhere" / "artifacts"
    assert set(project.sources) == {"products"}


def test_env_var_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("JAMMI_TEST_PG_DSN", "postgresql://127.0.0.1:5432/test")
    doc = valid_doc()
    doc["sources"]["pg"] = {
        "kind": "postgres",
        "dsn": "${JAMMI_TEST_PG_DSN}",
        "table": "public.items",
        "key": "id",
        "columns": {"id": "int"},
    }
    project = load_project(write_yaml(tmp_path, doc))
    assert project.sources["pg"].dsn == "postgresql://127.0.0.1:5432/test"
    assert project.sources["pg"].table == "public.items"


# --- invalid files ----------------------------------------------------------------------


def test_unknown_kind(tmp_path):
    doc = valid_doc()
    doc["sources"]["products"]["kind"] = "excel"
    message = load_error(tmp_path, doc)
    assert "sources.products.kind" in message
    # says what is allowed
    assert "Input should be 'csv', 'parquet', 'jsonl', 'duckdb', 'postgres' or 'nats'" in message


def test_key_not_a_declared_column(tmp_path):
    doc = valid_doc()
    doc["sources"]["products"]["key"] = "sku"
    message = load_error(tmp_path, doc)
    assert "sources.products" in message
    assert "key 'sku' is not a declared column" in message
    assert "id, title, body, price" in message


def test_text_column_not_declared(tmp_path):
    doc = valid_doc()
    doc["pipelines"]["products"]["text_columns"] = ["title", "summary"]
    message = load_error(tmp_path, doc)
    assert "pipelines.products.text_columns" in message
    assert "'summary' is not a column of source 'products'" in message


def test_pipeline_references_unknown_source(tmp_path):
    doc = valid_doc()
    doc["pipelines"]["products"]["source"] = "prodcuts"
    message = load_error(tmp_path, doc)
    assert "pipelines.products.source" in message
    assert "unknown source or entity 'prodcuts'" in message
    assert "declared: products" in message


def test_extra_unknown_field_in_a_source(tmp_path):
    doc = valid_doc()
    doc["sources"]["products"]["delimter"] = ";"
    message = load_error(tmp_path, doc)
    assert "sources.products.delimter" in message
    assert "not permitted" in message.lower()


def test_extra_unknown_field_at_top_level_and_in_a_column(tmp_path):
    doc = valid_doc()
    doc["pipeline"] = {}
    doc["sources"]["products"]["columns"]["price"]["minimum"] = 0
    message = load_error(tmp_path, doc)
    assert f"{tmp_path / 'jammi.yaml'}: pipeline: " in message
    assert "sources.products.columns.price.minimum" in message


def test_bad_column_type(tmp_path):
    doc = valid_doc()
    doc["sources"]["products"]["columns"]["price"] = "decimal"
    message = load_error(tmp_path, doc)
    assert "sources.products.columns.price.type" in message
    # lists the allowed types
    assert "Input should be 'str', 'int', 'float', 'bool', 'datetime' or 'date'" in message


def test_postgres_without_dsn(tmp_path):
    doc = valid_doc()
    doc["sources"]["products"] = {
        "kind": "postgres",
        "table": "products",
        "key": "id",
        "columns": {"id": "int", "title": "str", "body": "str"},
    }
    message = load_error(tmp_path, doc)
    assert "sources.products" in message
    assert "kind 'postgres' needs 'dsn'" in message


def test_postgres_needs_exactly_one_of_table_or_query(tmp_path):
    doc = valid_doc()
    doc["sources"]["products"] = {
        "kind": "postgres",
        "dsn": "postgresql://127.0.0.1/test",
        "table": "products",
        "query": "SELECT 1",
        "key": "id",
        "columns": {"id": "int", "title": "str", "body": "str"},
    }
    message = load_error(tmp_path, doc)
    assert "sources.products" in message
    assert "exactly one of 'table' or 'query'" in message


def test_file_kind_without_path(tmp_path):
    doc = valid_doc()
    del doc["sources"]["products"]["path"]
    message = load_error(tmp_path, doc)
    assert "sources.products" in message
    assert "kind 'csv' needs 'path'" in message


def test_bad_source_name(tmp_path):
    doc = valid_doc()
    doc["sources"]["my-products"] = doc["sources"].pop("products")
    doc["pipelines"] = {}
    message = load_error(tmp_path, doc)
    assert "sources.my-products" in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "jammi.yaml"
    with pytest.raises(ConfigError) as info:
        load_project(path)
    message = str(info.value)
    assert str(path) in message
    assert "project file not found" in message
    assert PROJECT_ENV in message


def test_invalid_yaml(tmp_path):
    path = tmp_path / "jammi.yaml"
    path.write_text("sources:\n  products:\n    kind: csv\n   key: [id\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_project(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid YAML" in message
    assert "line" in message  # the YAML parser's position


def test_top_level_not_a_mapping(tmp_path):
    path = tmp_path / "jammi.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_project(path)
    assert str(path) in str(info.value)
    assert "top level must be a mapping" in str(info.value)


def test_unset_env_var(tmp_path, monkeypatch):
    monkeypatch.delenv("JAMMI_TEST_UNSET_VAR", raising=False)
    doc = valid_doc()
    doc["sources"]["pg"] = {
        "kind": "postgres",
        "dsn": "postgresql://${JAMMI_TEST_UNSET_VAR}@127.0.0.1/test",
        "table": "items",
        "key": "id",
        "columns": {"id": "int"},
    }
    message = load_error(tmp_path, doc)
    assert "sources.pg.dsn" in message
    assert "${JAMMI_TEST_UNSET_VAR}" in message
    assert "not set" in message


def test_several_problems_are_all_reported(tmp_path):
    doc = valid_doc()
    doc["sources"]["products"]["kind"] = "excel"
    doc["sources"]["products"]["columns"]["price"] = "decimal"
    message = load_error(tmp_path, doc)
    assert "sources.products.kind" in message
    assert "sources.products.columns.price.type" in message
    assert all(line.startswith(str(tmp_path / "jammi.yaml")) for line in message.splitlines())


# --- Dagster definitions ----------------------------------------------------------------


def test_definitions_fail_to_load_with_the_config_message(tmp_path, monkeypatch):
    doc = valid_doc()
    doc["sources"]["products"]["kind"] = "excel"
    path = write_yaml(tmp_path, doc)
    monkeypatch.setenv(PROJECT_ENV, str(path))

    with pytest.raises(Exception) as info:  # noqa: B017 - the component wraps the ConfigError
        definitions_module.defs()  # the code location's lazy definitions
    cause = info.value
    while not isinstance(cause, ConfigError) and cause.__cause__ is not None:
        cause = cause.__cause__  # Dagster shows the chain; the ConfigError is its last link
    assert isinstance(cause, ConfigError)
    assert str(path) in str(cause)
    assert "sources.products.kind" in str(cause)

    with pytest.raises(ConfigError) as info:
        build_definitions(load_project())
    assert str(path) in str(info.value)
    assert "sources.products.kind" in str(info.value)


def test_definitions_load_from_env_project(tmp_path, monkeypatch):
    path = write_yaml(tmp_path, valid_doc())
    monkeypatch.setenv(PROJECT_ENV, str(path))
    defs = definitions_module.defs()
    assert isinstance(defs, dg.Definitions)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert keys == {
        "raw_products", "validated_products", "quarantine_products",
        "products_embeddings", "products_ann_index", "quality_report",
    }


def test_repo_project_loads_and_builds_definitions():
    project = load_project(REPO / "jammi.yaml")
    assert set(project.sources) == {"products", "reviews", "inventory", "partners", "reports"}
    assert project.sources["products"].kind == "csv"
    assert project.pipelines["reports"].chunking.max_tokens > 0
    assert project.sources["reviews"].kind == "jsonl"
    assert project.sources["inventory"].kind == "duckdb"
    assert project.sources["partners"].schema_.current == "v2"
    assert set(project.entities["product"].sources) == {"products", "inventory", "partners"}
    assert project.pipelines["products"].text_columns == ["title", "description"]

    defs = build_definitions(project)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    expected = {
        "raw_products", "validated_products", "quarantine_products",
        "products_embeddings", "products_ann_index",
        "fused_product", "fused_product_provenance", "fused_product_links",
        "product_entities_embeddings", "product_entities_ann_index", "quality_report",
    }
    assert expected <= keys
    assert {"raw_reviews", "validated_reviews", "reviews_embeddings"} <= keys
    graph = defs.resolve_asset_graph()
    embeddings = dg.AssetKey("products_embeddings")
    assert dg.AssetKey("validated_products") in graph.get(embeddings).parent_keys
    assert embeddings in graph.get(dg.AssetKey("products_ann_index")).parent_keys
    fused = graph.get(dg.AssetKey("fused_product")).parent_keys
    assert {dg.AssetKey(f"validated_{s}") for s in ("products", "inventory", "partners")} <= fused
    assert dg.AssetKey("fused_product") in graph.get(dg.AssetKey("product_entities_embeddings")).parent_keys


@pytest.mark.parametrize("sources, pipelines, message", [
    ({"a": {}, "b": {}}, {"a_latest": "b"},
     "'a_latest_embeddings' is made by both sources.a and pipelines.a_latest"),
    ({"y_embeddings": {}}, {"raw_y": "y_embeddings"},
     "'raw_y_embeddings' is made by both sources.y_embeddings and pipelines.raw_y"),
    ({"b": {}}, {"refresh": "b"}, None),
    ({"b": {}}, {"refresh_log": "b"}, None),
])
def test_colliding_asset_or_view_names_fail_at_load(tmp_path, sources, pipelines, message):
    columns = {"id": "int", "t": "str"}
    doc = {"sources": {n: {"kind": "csv", "path": "x.csv", "key": "id", "columns": columns} for n in sources},
           "pipelines": {n: {"source": s, "text_columns": ["t"]} for n, s in pipelines.items()}}
    if message is None:
        parse_project(doc, tmp_path / "jammi.yaml")
        return
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_project(doc, tmp_path / "jammi.yaml")
