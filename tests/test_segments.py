"""A new table is written as bounded segments, each with its own HNSW sidecar (scale issue):
building the index of a large table then holds one segment's vectors at a time, and the
segmented table searches, verifies and refreshes like a one-file table."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from jammi.app.facade import Jammi
from jammi.tables import build
from jammi.tables.catalog import Catalog
from jammi.tables.contract import manifest_index_spec
from jammi.tables.index import VersionIndex, segment_base
from jammi.tables.versions import read_current
from tests.conftest import materialize
from tests.test_refresh import ROWS, run, write_rows
from tests.test_refresh import project as items_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

project = items_project  # the items project fixture, under its name


def test_a_new_table_is_bounded_segments_each_indexed(project, monkeypatch, tmp_path):
    monkeypatch.setattr(build, "SEGMENT_ROWS", 5)
    run(project)
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="items")
    version = catalog.current_version(rec)
    assert version.version == 0 and len(version.segments) == 3  # 12 rows: 5 + 5 + 2
    assert [s.rows for s in version.segments] == [5, 5, 2]
    assert version.segments[0].file == rec.parquet_path.name
    for ref in version.segments:
        assert pq.ParquetFile(rec.tables_dir / ref.file).metadata.num_rows == ref.rows
        base = segment_base(rec.tables_dir, ref)
        assert base.with_name(base.name + ".usearch").exists()
    index = VersionIndex(rec.tables_dir, version, rec.dimensions, manifest_index_spec(rec.base_path))
    assert not index.problems and index.unindexed_rows == 0
    ids = read_current(rec.tables_dir, version, ["_content_hash"]).column("_row_id").to_pylist()
    assert sorted(ids, key=int) == [str(i) for i in ROWS]
    jammi = Jammi(project)
    assert jammi.sql("SELECT count(*) AS n FROM jammi.items_embeddings")["n"][0] == 12
    hits = jammi.search("items", "a piano for everyday use", k=3)
    assert hits["_row_id"].astype(str).iloc[0] == "7"
    assert jammi.verify()[0].clean
    # a refresh commits on top of the segmented version 0
    changed = {**ROWS, 3: ("Product 3 stool", "A stool thing for everyday use, model 3")}
    del changed[11]
    write_rows(tmp_path / "items.csv", changed)
    run(project)
    version = catalog.current_version(catalog.active(pipeline="items"))
    assert version.version == 1 and version.rows == 11 and len(version.segments) == 4
    assert jammi.verify()[0].clean


def test_compaction_merges_small_segments_and_keeps_large_clean_ones(project, monkeypatch, tmp_path):
    from jammi.tables import refresh

    monkeypatch.setattr(build, "SEGMENT_ROWS", 4)
    monkeypatch.setattr(refresh, "SEGMENT_ROWS", 4)
    monkeypatch.setattr(refresh, "MAX_SEGMENTS", 2)
    run(project)  # version 0: segments of 4, 4, 4 rows (large: at least half of SEGMENT_ROWS)
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="items")
    first = catalog.current_version(rec).segments
    assert [s.rows for s in first] == [4, 4, 4]
    rows = dict(ROWS)
    for n in range(13, 16):  # three refreshes, each one added row: three small segments
        rows[n] = (f"Product {n} lantern", f"A lantern thing, model {n}")
        write_rows(tmp_path / "items.csv", rows)
        run(project)
    version = catalog.current_version(catalog.table(rec.table_name))
    assert version.counts.outcome == "compacted" and version.rows == 15 and not version.deletes
    # the three clean large segments are kept as they were; the small ones became one
    assert version.segments[:3] == first and [s.rows for s in version.segments[3:]] == [3]
    jammi = Jammi(project)
    assert jammi.verify()[0].clean
    # a changed row: its segment has a deletion; the next compaction rewrites only that one
    rows[2] = ("Product 2 desk lamp", "A lamp thing for the desk, model 2")
    write_rows(tmp_path / "items.csv", rows)
    run(project)
    assert jammi.verify()[0].clean
    compacted = refresh.compact_table(catalog, catalog.table(rec.table_name), "items")
    holder = next(s for s in first
                  if "2" in pq.read_table(rec.tables_dir / s.file).column("_row_id").to_pylist())
    assert holder not in compacted.segments and all(s in compacted.segments for s in first if s != holder)
    assert compacted.rows == 15 and jammi.verify()[0].clean
    assert jammi.sql("SELECT count(*) AS n FROM jammi.items_embeddings")["n"][0] == 15


def test_a_rerun_with_nothing_new_reads_no_row_until_a_file_changes(project, monkeypatch):
    from jammi.app import embeddings

    run(project)
    real = embeddings.source_rows
    calls = []
    monkeypatch.setattr(embeddings, "source_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    result = materialize(project, selection=["raw_items", "validated_items", "quarantine_items",
                                             "items_embeddings", "items_ann_index"])
    assert result.success and not calls  # the frame and the table are what the last run left
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["source_table_parity"] and checks["row_count"] and checks["ann_recall_at_10"]
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="items")
    segment = rec.tables_dir / catalog.current_version(rec).segments[0].file
    segment.write_bytes(segment.read_bytes())  # the same bytes, written again: no longer trusted
    run(project)
    assert calls  # compared afresh
