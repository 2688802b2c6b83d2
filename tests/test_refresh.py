"""Incremental refresh: a table of the same generation embeds only added and changed rows,
drops deleted ones at once, keeps unchanged vectors as they are, and commits a new version."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from jammi.app.facade import Jammi
from jammi.app.verify import verify
from jammi.tables.catalog import Catalog
from jammi.tables.versions import read_current
from tests.conftest import materialize, write_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

HEADER = "id,title,body\n"
ROWS = {i: (f"Product {i} {w}", f"A {w} thing for everyday use, model {i}")
        for i, w in enumerate(["kettle", "lamp", "chair", "tent", "drill", "scarf", "piano", "mug",
                               "boots", "atlas", "sofa", "radio"], start=1)}


def write_rows(path, rows: dict) -> None:
    path.write_text(HEADER + "".join(f'{k},"{t}","{b}"\n' for k, (t, b) in rows.items()), encoding="utf-8")


@pytest.fixture
def project(tmp_path):
    data = tmp_path / "items.csv"
    write_rows(data, ROWS)
    return write_project(tmp_path, {"items": {"kind": "csv", "path": str(data), "key": "id",
                                              "columns": {"id": "int", "title": "str", "body": "str"}}},
                         {"items": {"source": "items", "text_columns": ["title", "body"]}})


def run(project, **config):
    selection = ["raw_items", "validated_items", "quarantine_items", "items_embeddings", "items_ann_index"]
    run_config = {"ops": {"items_embeddings": {"config": config}}} if config else None
    result = materialize(project, selection=selection, run_config=run_config)
    assert result.success
    mats = {m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
            for m in result.asset_materializations_for_node("items_embeddings")}
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()
              if e.asset_key.to_user_string() in ("items_embeddings", "items_ann_index")}
    return mats["items_embeddings"], checks


def current_rows(project):
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="items")
    table = read_current(rec.tables_dir, catalog.current_version(rec), ["vector", "_content_hash"])
    return {r: (h, np.asarray(v, dtype=np.float32)) for r, h, v in zip(
        table["_row_id"].to_pylist(), table["_content_hash"].to_pylist(),
        table["vector"].to_pylist(), strict=True)}


def view_keys(project) -> list[str]:
    con = duckdb.connect(str(project.artifact_dir / "jammi.duckdb"), read_only=True)
    try:
        return sorted(r[0] for r in con.execute("SELECT _row_id FROM jammi.items_embeddings").fetchall())
    finally:
        con.close()


def test_no_change_refresh_loads_no_model_and_writes_no_version(project):
    first, _ = run(project)
    assert first["outcome"] == "rebuilt" and first["added"] == 12 and first["version"] == 0
    again, checks = run(project)
    assert again["outcome"] == "no_change" and again["rows_encoded"] == 0
    assert again["model_loaded"] is False and again["unchanged"] == 12
    assert again["table_name"] == first["table_name"] and again["version"] == 0
    assert all(checks.values()), checks
    assert len(Catalog(project.artifact_dir).versions(first["table_name"])) == 1
    log = Jammi(project, recover_on_open=False).sql(
        "SELECT outcome, version, unchanged FROM jammi.refresh_log ORDER BY committed_at")
    assert log.values.tolist() == [["rebuilt", 0, 0], ["no_change", 0, 12]]


def test_refresh_embeds_only_added_and_changed_rows(project, encoder):
    run(project)
    before = current_rows(project)
    rows = dict(ROWS)
    rows[3] = ("Product 3 chair", "A folding chair for the garden")  # changed
    del rows[5]  # deleted
    rows[13] = ("Product 13 kayak", "A sea kayak with a rudder")  # added
    write_rows(project.root / "items.csv", rows)
    meta, checks = run(project)
    assert (meta["outcome"], meta["added"], meta["changed"], meta["deleted"], meta["unchanged"],
            meta["rows_encoded"], meta["version"]) == ("refreshed", 1, 1, 1, 10, 2, 1)
    assert all(checks.values()), checks
    after = current_rows(project)
    assert sorted(after) == sorted(str(k) for k in rows)
    for key in after.keys() - {"3", "13"}:  # unchanged vectors kept exactly
        assert after[key][0] == before[key][0] and np.array_equal(after[key][1], before[key][1])
    expected = encoder.encode(["Product 3 chair A folding chair for the garden"])[0]
    assert float(after["3"][1] @ expected) > 0.99999
    assert view_keys(project) == sorted(str(k) for k in rows)
    jammi = Jammi(project)
    for exact in (False, True):
        hits = jammi.search("items", "Product 5 drill A drill thing for everyday use", k=12, exact=exact)
        assert "5" not in hits["_row_id"].tolist() and "13" in hits["_row_id"].tolist()
    assert [v.parity.counts() for v in verify(project)] == [
        {"missing": 0, "stale": 0, "orphan": 0, "unindexed": 0}]


def test_full_flag_and_generation_change_rebuild(project):
    first, _ = run(project)
    full, _ = run(project, full=True)
    assert full["outcome"] == "rebuilt" and full["table_name"] != first["table_name"]
    one_column = "text_columns:\n    - title\n"
    doc = project.path.read_text().replace("text_columns:\n    - title\n    - body\n", one_column)
    project.path.write_text(doc)
    from jammi.spec.project import load_project

    changed = load_project(project.path)
    meta, _ = run(changed)
    assert meta["outcome"] == "rebuilt"
    assert meta["table_name"] not in (first["table_name"], full["table_name"])


def test_versions_compaction_rollback_and_expiry(project):
    run(project)
    rows = dict(ROWS)
    for step in range(3):
        rows[100 + step] = (f"Product {100 + step} vase", "A glass vase")
        rows.pop(step + 1)
        write_rows(project.root / "items.csv", rows)
        run(project)
    jammi = Jammi(project, recover_on_open=False)
    versions = jammi.versions("items")
    assert versions["version"].tolist() == [0, 1, 2, 3] and versions["current"].tolist()[-1]
    before = current_rows(project)
    compacted = jammi.compact("items")
    assert compacted.version == 4 and len(compacted.segments) == 1 and not compacted.deletes
    after = current_rows(project)
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[k][1], before[k][1]) for k in after)
    segment = project.artifact_dir / "jammi_db" / compacted.segments[0].file
    assert pq.ParquetFile(segment).metadata.num_rows == 12
    jammi.rollback_version("items", 0)
    assert view_keys(project) == sorted(str(k) for k in ROWS)  # version 0 serves again
    jammi.rollback_version("items", 4)
    deleted = jammi.expire("items", keep=1)
    assert deleted and all(not p.exists() for p in deleted)
    assert jammi.versions("items")["version"].tolist() == [4]
    assert view_keys(project) == sorted(str(k) for k in rows)
    assert verify(project)[0].clean


def test_a_publish_lost_to_a_kill_is_made_again_by_recovery(project, tmp_path):
    """A writer killed after its state commit but before its publish leaves jammi.duckdb one
    commit behind, and a refresh reads its base version there; recovery, which every embedding
    step runs first, publishes again."""
    import os
    import shutil

    from jammi.tables.recovery import recover

    run(project)
    catalog = Catalog(project.artifact_dir)
    from jammi.tables.published import stamp_path

    stale, stale_stamp = tmp_path / "stale.duckdb", tmp_path / "stale.stamp"
    shutil.copy2(catalog.path, stale)
    shutil.copy2(stamp_path(catalog.path), stale_stamp)  # readers open the private file it names
    private = sorted(catalog.path.parent.glob("state/published/*"))
    kept = tmp_path / "kept"
    kept.mkdir()
    for f in private:
        shutil.copy2(f, kept / f.name)
    rows = dict(ROWS)
    rows[99] = ("Product 99 kite", "A kite thing for windy days, model 99")
    write_rows(tmp_path / "items.csv", rows)
    run(project)  # commits version 1 and publishes it
    os.replace(stale, catalog.path)  # ... as if the publish never happened
    for f in kept.iterdir():
        shutil.copy2(f, catalog.path.parent / "state" / "published" / f.name)
    os.replace(stale_stamp, stamp_path(catalog.path))
    os.utime(catalog.path, ns=(1, 1))
    assert catalog.current_version(catalog.active(pipeline="items")).version == 0  # readers lag
    recover(catalog)
    assert catalog.current_version(catalog.active(pipeline="items")).version == 1
