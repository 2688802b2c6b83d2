"""Search answers k rows whenever k rows exist, during a refresh too (issue 28, reproduction 7).

A refresh replaces the validated frame before its table commits the new version; in between,
the index still holds a row the frame has lost. Search used to drop that hit and return
k - 1 rows; it now asks again among the frame's rows."""

from __future__ import annotations

import threading

import pytest

from jammi.app.facade import Jammi
from jammi.app.sources import store_raw, validate_source
from jammi.query.search import search as uncached_search
from tests.test_search_cache import ROWS, build, items_project, write_rows

pytestmark = pytest.mark.slow  # the real packaged model embeds the rows

QUERY = "running shoes for the trail"


@pytest.fixture
def project(tmp_path, encoder):
    return items_project(tmp_path)


@pytest.mark.parametrize("exact", [False, True])
def test_a_row_deleted_from_the_frame_before_the_table_commits_is_replaced(project, exact):
    jammi = Jammi(project)
    top = jammi.search("items", QUERY, k=1, exact=exact)["_row_id"].tolist()[0]
    write_rows(project.root / "items.csv", {k: v for k, v in ROWS.items() if str(k) != top})
    store_raw(project, "items")
    validate_source(project, "items")  # the frame lost the row; the table still serves it

    for k in (5, len(ROWS) - 1):
        cached = jammi.search("items", QUERY, k=k, exact=exact)["_row_id"].tolist()
        table = jammi.search_table("items", QUERY, k=k, exact=exact).column("_row_id").to_pylist()
        fresh = uncached_search(project, "items", QUERY, k=k, exact=exact)["_row_id"].tolist()
        many = jammi.search_many("items", [QUERY, "coffee"], k=k, exact=exact)
        for found in (cached, table, fresh, *(m["_row_id"].tolist() for m in many)):
            assert len(found) == k and top not in found and len(set(found)) == k
    # past the rows that exist: every one of them, and no more
    assert len(jammi.search("items", QUERY, k=len(ROWS), exact=exact)) == len(ROWS) - 1


def test_search_in_a_loop_across_commits_always_answers_k(project, encoder):
    """A thread refreshes the table over and over, deleting a row and adding it back (and
    another one), while searches run against every state in between."""
    stop = threading.Event()
    errors: list[BaseException] = []
    commits = [0]

    def refresher():
        extra = {9: ("Waterproof trail running shoes", 99.0, "outdoors")}
        try:
            for turn in range(6):
                rows = {k: v for k, v in ROWS.items() if k != 1} if turn % 2 == 0 else {**ROWS, **extra}
                write_rows(project.root / "items.csv", rows)
                build(project, encoder)
                commits[0] += 1
        except BaseException as err:  # reported by the main thread
            errors.append(err)
        finally:
            stop.set()

    thread = threading.Thread(target=refresher)
    jammi = Jammi(project)
    counts = []
    thread.start()
    try:
        while not stop.is_set():
            counts.append(len(jammi.search("items", QUERY, k=5)))
            counts.append(len(uncached_search(project, "items", QUERY, k=5)))
    finally:
        thread.join()
    assert not errors, errors
    assert commits[0] == 6 and len(counts) > 20
    assert set(counts) == {5}, counts


def test_a_frame_replaced_during_a_read_is_read_again_and_a_damaged_one_is_not(tmp_path):
    """DuckDB opens a Parquet file to bind and again to scan: a frame renamed over in between
    fails to decode ("TProtocolException: Invalid data", seen in the loop above). The read is
    made again when the file changed, and an error on an unchanged file is raised at once."""
    import os

    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jammi.query import search as search_module

    frame = tmp_path / "validated_items.parquet"
    pq.write_table(pa.table({"id": [1]}), frame)
    calls = []

    def replaced_mid_read():
        calls.append(1)
        if len(calls) == 1:
            pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "next.parquet")
            os.replace(tmp_path / "next.parquet", frame)
            raise duckdb.Error("TProtocolException: Invalid data")
        return pq.read_table(frame).num_rows

    assert search_module._unless_replaced(frame, replaced_mid_read) == 2 and len(calls) == 2

    calls.clear()

    def damaged():
        calls.append(1)
        raise duckdb.Error("TProtocolException: Invalid data")

    with pytest.raises(duckdb.Error, match="Invalid data"):
        search_module._unless_replaced(frame, damaged)
    assert len(calls) == 1
