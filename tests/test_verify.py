"""`jammi verify [--repair]` and the refresh's answers to bad input: every difference between
source, table and index is counted, a damaged table is named with what to run, and the serving
version keeps serving meanwhile."""

from __future__ import annotations

import json
import os

import pytest

from jammi.app.verify import verify
from jammi.errors import ArtifactError
from jammi.tables.catalog import Catalog
from tests.conftest import invoke_cli, materialize, write_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

ROWS = {i: f"Item {i} {w}" for i, w in enumerate(["kettle", "lamp", "chair", "tent", "drill", "scarf"], 1)}


def write_rows(path, rows) -> None:
    path.write_text("id,title\n" + "".join(f"{k},{t}\n" for k, t in rows.items()), encoding="utf-8")


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    data = tmp_path / "items.csv"
    write_rows(data, ROWS)
    project = write_project(tmp_path, {"items": {"kind": "csv", "path": str(data), "key": "id",
                                                 "columns": {"id": "int", "title": "str"}}},
                            {"items": {"source": "items", "text_columns": ["title"]}})
    assert materialize(project).success
    return project


def counts(project) -> dict:
    return verify(project)[0].parity.counts()


def test_verify_counts_each_kind_of_difference_and_repair_fixes_them(project, monkeypatch):
    assert counts(project) == {"missing": 0, "stale": 0, "orphan": 0, "unindexed": 0}
    rows = dict(ROWS)
    rows[2] = "Item 2 floor lamp"  # stale
    del rows[3]  # orphan
    rows[7] = "Item 7 piano"  # missing
    write_rows(project.root / "items.csv", rows)
    assert materialize(project, selection=["raw_items", "validated_items", "quarantine_items"]).success
    rec = Catalog(project.artifact_dir).active(pipeline="items")
    rec.base_path.with_name(rec.base_path.name + ".usearch").unlink()
    assert counts(project) == {"missing": 1, "stale": 1, "orphan": 1, "unindexed": 6}
    cwd = os.getcwd()
    try:
        checked = invoke_cli(["verify", "--project", str(project.path), "--format", "json"])
        assert checked.exit_code == 1
        assert json.loads(checked.stdout)[0]["stale"] == 1
        repaired = invoke_cli(["verify", "items", "--repair", "--project", str(project.path)])
    finally:
        os.chdir(cwd)
    assert repaired.exit_code == 0, repaired.output
    assert "repairing items" in repaired.output
    assert counts(project) == {"missing": 0, "stale": 0, "orphan": 0, "unindexed": 0}


def test_a_deleted_version_file_is_named_and_the_table_keeps_serving_what_it_has(project):
    rows = dict(ROWS)
    rows[8] = "Item 8 atlas"
    write_rows(project.root / "items.csv", rows)
    assert materialize(project).success
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="items")
    segment = catalog.current_version(rec).segments[-1]
    (rec.tables_dir / segment.file).unlink()
    found = verify(project)[0]
    assert not found.clean and found.needs_rebuild
    assert segment.file in found.problem and "--full" in found.problem and "'items'" in found.problem
    rows[9] = "Item 9 sofa"
    write_rows(project.root / "items.csv", rows)
    result = materialize(project)
    assert not result.success  # the refresh refuses to build on a damaged version
    assert catalog.current_version(catalog.active(pipeline="items")).version == 1
    full = materialize(project, run_config={"ops": {"items_embeddings": {"config": {"full": True}}}})
    assert full.success and verify(project)[0].clean


def test_a_changed_key_column_asks_for_a_full_rebuild(project, tmp_path):
    (tmp_path / "items.csv").write_text("id,sku,title\n" + "".join(
        f"{k},S{k},{t}\n" for k, t in ROWS.items()), encoding="utf-8")
    moved = write_project(tmp_path, {"items": {"kind": "csv", "path": str(tmp_path / "items.csv"),
                                               "key": "sku", "columns": {"sku": "str", "title": "str"}}},
                          {"items": {"source": "items", "text_columns": ["title"]}})
    from jammi.app.embeddings import embed_pipeline
    from jammi.embedding.model import LazyEncoder

    assert materialize(moved, selection=["raw_items", "validated_items", "quarantine_items"]).success
    with pytest.raises(ArtifactError, match="key column changed from 'id' to 'sku'.*--full"):
        embed_pipeline(moved, "items", LazyEncoder("sentence-transformers/all-MiniLM-L6-v2", "cpu"))
