"""Sources read, validated and written a batch at a time (scale issue): the result equals the
whole-frame recipe, keys are checked across batches, column types are unified across batches,
checks of a large source see a bounded uniform sample, and a rerun over unchanged input skips
the work and reports the same outcomes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from jammi.app import sources
from jammi.ingest import extract as extract_module
from jammi.ingest.extract import extract
from jammi.quality import sample
from jammi.shared import frame_path
from jammi.silver.recipe import to_silver
from jammi.tables.frames import load_frame
from tests.conftest import failure_message, materialize, write_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

COLUMNS = {"id": "int", "title": "str", "note": "str", "price": {"type": "float", "ge": 0}}
SELECT = ["raw_items", "validated_items", "quarantine_items"]


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(extract_module, "BATCH_ROWS", 5)
    monkeypatch.setattr(sources, "BATCH_ROWS", 5)


def csv_rows(n: int = 23) -> list[str]:
    rows = []
    for i in range(1, n + 1):
        note = "" if i <= 5 else f"note {i}"  # all null in the first batch: its type is unified
        price = "free" if i == 17 else f"{i}.5"  # quarantined in the fourth batch
        rows.append(f"{i},Item number {i},{note},{price}")
    return rows


def items_project(root, rows: list[str]):
    (root / "items.csv").write_text("id,title,note,price\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return write_project(root, {"items": {"kind": "csv", "path": "items.csv", "key": "id",
                                          "columns": COLUMNS,
                                          "quality": {"schema_conformance": {"max_rate": 0.5}}}})


def metadata(result, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


def checks(result) -> dict[str, tuple]:
    return {e.check_name: (e.passed, e.metadata["statistic"].value if "statistic" in e.metadata else None)
            for e in result.get_asset_check_evaluations()}


def test_batches_give_the_whole_recipe_and_rerun_over_unchanged_input_skips(tmp_path, small_batches):
    project = items_project(tmp_path, csv_rows())
    first = materialize(project, selection=SELECT)
    assert first.success, failure_message(first)
    whole = to_silver(extract(project, "items"), project.sources["items"], "items")
    valid = load_frame(project.artifact_dir, "validated_items")
    pd.testing.assert_frame_equal(valid.reset_index(drop=True), whole.valid.reset_index(drop=True),
                                  check_dtype=False)
    assert valid["note"].isna().sum() == 5 and valid["note"].iloc[-1] == "note 23"
    quarantine = load_frame(project.artifact_dir, "quarantine_items")
    assert quarantine["id"].tolist() == ["17"] and quarantine["price"].tolist() == ["free"]
    meta = metadata(first, "validated_items")
    assert (meta["dagster/row_count"], meta["rows_quarantined"], meta["unchanged_input"]) == (22, 1, False)
    # nothing new: neither step reads a row, the outcomes are the same
    second = materialize(project, selection=SELECT)
    assert metadata(second, "raw_items")["unchanged_input"] is True
    assert metadata(second, "validated_items")["unchanged_input"] is True
    assert checks(second) == checks(first)
    # one byte of the source changes: both steps run again
    rows = csv_rows()
    rows[2] = rows[2].replace("Item number 3", "Item number 3b")
    project = items_project(tmp_path, rows)
    third = materialize(project, selection=SELECT)
    assert metadata(third, "raw_items")["unchanged_input"] is False
    assert "Item number 3b" in load_frame(project.artifact_dir, "validated_items")["title"].tolist()
    # an output removed by hand: validation runs again instead of trusting its memo
    frame_path(project.artifact_dir, "validated_items").unlink()
    fourth = materialize(project, selection=SELECT)
    assert metadata(fourth, "validated_items")["unchanged_input"] is False
    assert len(load_frame(project.artifact_dir, "validated_items")) == 22


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows[:18] + ["3,Again item 3,,1.0"] + rows[19:],
     "key column 'id' has 1 duplicated key(s): '3' x2"),
    (lambda rows: rows[:20] + [",No key,,1.0"] + rows[21:],
     "key column 'id' has 1 null or empty value(s) out of 23 rows"),
])
def test_keys_are_checked_across_batches(tmp_path, small_batches, edit, message):
    project = items_project(tmp_path, edit(csv_rows()))
    result = materialize(project, selection=SELECT)
    assert not result.success and message in failure_message(result)
    assert not frame_path(project.artifact_dir, "raw_items").exists()  # nothing was written
    assert not list(frame_path(project.artifact_dir, "raw_items").parent.glob(".raw_items*parts*"))


def test_jsonl_types_that_differ_between_batches_are_unified(tmp_path, small_batches):
    lines = [json.dumps({"id": i, "title": f"Thing {i}", "note": None if i < 6 else f"n{i}",
                         "price": i + 0.5 if i < 8 else f"{i}.25"}) for i in range(1, 13)]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    project = write_project(tmp_path, {"items": {"kind": "jsonl", "path": "items.jsonl", "key": "id",
                                                 "columns": COLUMNS}})
    result = materialize(project, selection=SELECT)
    assert result.success, failure_message(result)
    raw = load_frame(project.artifact_dir, "raw_items")
    assert len(raw) == 12 and raw["price"].tolist()[-1] == "12.25"
    valid = load_frame(project.artifact_dir, "validated_items")
    assert valid["price"].tolist() == [i + 0.5 for i in range(1, 8)] + [i + 0.25 for i in range(8, 13)]


def test_checks_of_a_large_source_see_a_bounded_sample(tmp_path, small_batches, monkeypatch):
    monkeypatch.setattr(sample, "SAMPLE_ROWS", 8)
    project = items_project(tmp_path, csv_rows())
    result = materialize(project, selection=SELECT)
    assert result.success, failure_message(result)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    completeness = evaluations["completeness"].metadata["description"].value
    assert completeness.startswith("on a uniform sample of 8 of 22 valid rows")
    conformance = evaluations["schema_conformance"]  # exact counts, not the sample's
    assert conformance.metadata["statistic"].value == pytest.approx(1 / 23)
