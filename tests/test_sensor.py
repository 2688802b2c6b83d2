"""source_files_sensor: one run request per changed file source, cursor per source."""

from __future__ import annotations

import json
import os

import dagster as dg

from jammi_assets.definitions import build_definitions
from tests.conftest import PRODUCT_COLUMNS, write_project


def _tick(defs: dg.Definitions, cursor: str | None):
    sensor = defs.get_sensor_def("source_files_sensor")
    with dg.instance_for_test() as instance:
        return sensor(dg.build_sensor_context(cursor=cursor, instance=instance, definitions=defs))


def test_requests_runs_only_for_changed_sources(tmp_path, products_csv):
    other = tmp_path / "data" / "notes.jsonl"
    other.write_text('{"id": "n1", "text": "hello"}\n', encoding="utf-8")
    project = write_project(
        tmp_path,
        {
            "products": {"kind": "csv", "path": "data/products.csv", "key": "id", "columns": PRODUCT_COLUMNS},
            "notes": {"kind": "jsonl", "path": "data/*.jsonl", "key": "id",
                      "columns": {"id": "str", "text": "str"}},
        },
        {"products": {"source": "products", "text_columns": ["title"]}},
    )
    defs = build_definitions(project)

    first = _tick(defs, None)
    assert sorted(r.tags["jammi/source"] for r in first.run_requests) == ["notes", "products"]
    products_req = next(r for r in first.run_requests if r.tags["jammi/source"] == "products")
    assert {k.to_user_string() for k in products_req.asset_selection} == {
        "raw_products", "validated_products", "quarantine_products",
        "products_embeddings", "products_ann_index",
    }

    quiet = _tick(defs, first.cursor)
    assert quiet.run_requests == [] and json.loads(quiet.cursor) == json.loads(first.cursor)

    with open(products_csv, "a", encoding="utf-8") as fh:
        fh.write("7,Trail socks,Merino socks,9\n")
    os.utime(products_csv, ns=(1, 2_000_000_000_000_000_000))
    changed = _tick(defs, quiet.cursor)
    assert [r.tags["jammi/source"] for r in changed.run_requests] == ["products"]
    assert changed.run_requests[0].run_key != products_req.run_key
