"""The facade's cached search (jammi.query.searcher): a second search opens nothing, a new
version or a rolled-back one is noticed, search_many equals a loop of search, and the key
lookup returns exactly what the old DuckDB join over the frame returned."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import jammi.query.rows as rows_module
import jammi.query.searcher as searcher_module
import jammi.tables.catalog as catalog_module
import jammi.tables.index as index_module
from jammi.app.embeddings import embed_pipeline, index_pipeline
from jammi.app.facade import Jammi
from jammi.app.sources import store_raw, validate_source
from jammi.embedding.model import LazyEncoder
from jammi.query.rows import SourceRows
from jammi.query.search import _attach_columns
from jammi.query.search import search as uncached_search
from jammi.spec.project import DEFAULT_MODEL
from tests.conftest import write_project

ROWS = {1: ("Red running shoes", 59.5, "outdoors"), 2: ("Espresso machine with steam wand", 199.0, "kitchen"),
        3: ("Cast iron skillet", 35.0, "kitchen"), 4: ("Noise cancelling headphones", 149.0, "tech"),
        5: ("Yoga mat for home workouts", 25.0, "sports"), 6: ("Trail running backpack", 80.0, "outdoors"),
        7: ("Chef's knife of carbon steel", 120.0, "kitchen"), 8: ("Wireless earbuds", 89.0, "tech")}


def write_rows(path, rows: dict) -> None:
    path.write_text("id,title,price,category\n" + "".join(
        f'{k},"{t}",{p},{c}\n' for k, (t, p, c) in rows.items()), encoding="utf-8")


def build(project, encoder=None) -> None:
    """What the assets do, in their order, without Dagster around them: the frame first, then
    the table."""
    store_raw(project, "items")
    validate_source(project, "items")
    embed_pipeline(project, "items", encoder or LazyEncoder(DEFAULT_MODEL, "cpu"))
    index_pipeline(project, "items")


def items_project(tmp_path):
    """A project of ROWS (source and pipeline `items`, text: title), built."""
    data = tmp_path / "items.csv"
    write_rows(data, ROWS)
    project = write_project(tmp_path, {"items": {
        "kind": "csv", "path": str(data), "key": "id",
        "columns": {"id": "int", "title": "str", "price": "float", "category": "str"}}},
        {"items": {"source": "items", "text_columns": ["title"]}})
    build(project)
    return project


@pytest.fixture
def project(tmp_path, encoder):
    return items_project(tmp_path)


@pytest.fixture
def opens(monkeypatch):
    """Counts of catalog opens, index loads and frame reads from here on."""
    counts = {"catalog": 0, "index": 0, "frame": 0, "filter": 0}

    def counting(module, name, what):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            counts[what] += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)

    counting(catalog_module, "open_private", "catalog")
    counting(index_module, "load_index", "index")
    counting(searcher_module, "SourceRows", "frame")
    counting(rows_module, "filter_keys", "filter")
    return counts


def query(encoder, text: str) -> np.ndarray:
    return encoder.encode([text])[0]


@pytest.mark.slow
def test_second_search_opens_nothing(project, encoder, opens):
    jammi = Jammi(project, recover_on_open=False)
    q = query(encoder, "shoes for running")
    first = jammi.search("items", vector=q, k=3)
    # the catalog twice: the table served, then the frame's recorded checksum as the frame loads
    assert opens["catalog"] == 2 and opens["index"] == 1 and opens["frame"] == 1
    before = dict(opens)
    again = jammi.search("items", vector=q, k=3)
    text = jammi.search("items", "shoes for running", k=3, select=["title"])
    assert opens == before  # no catalog, index or frame read the second time
    pd.testing.assert_frame_equal(first, again)
    assert first["title"].iloc[0] == "Red running shoes"
    assert text["_row_id"].tolist() == first["_row_id"].tolist()


@pytest.mark.slow
def test_loader_is_called_once_per_model(project, encoder):
    calls = []

    def loader(model_id):
        calls.append(model_id)
        return encoder

    jammi = Jammi(project, recover_on_open=False, loader=loader)
    jammi.search("items", "coffee", k=2)
    jammi.search_many("items", ["tea", "a knife"], k=2)
    assert calls == [DEFAULT_MODEL]


@pytest.mark.slow
def test_new_version_and_rollback_are_noticed(project, encoder, opens):
    jammi = Jammi(project, recover_on_open=False)
    q = query(encoder, "a tent for camping")
    old = jammi.search("items", vector=q, k=1)
    assert old["_row_id"].tolist() != ["9"]
    tent = ("Two-person camping tent", 210.0, "outdoors")
    write_rows(Path(project.sources["items"].path), {**ROWS, 9: tent})
    build(project)  # commits version 1 and publishes
    before = dict(opens)
    new = jammi.search("items", vector=q, k=1)
    assert new["_row_id"].tolist() == ["9"] and new["title"].tolist() == ["Two-person camping tent"]
    # the table served, and the refreshed frame's recorded checksum as it loads again
    assert opens["catalog"] == before["catalog"] + 2
    assert opens["index"] == before["index"] + 1  # the new segment only; the first is taken over
    assert opens["frame"] == before["frame"] + 1  # the frame file was replaced
    jammi.rollback_version("items", 0)
    back = jammi.search("items", vector=q, k=1)
    assert back["_row_id"].tolist() == old["_row_id"].tolist()
    pd.testing.assert_frame_equal(back, uncached_search(project, "items", vector=q, k=1))


@pytest.mark.slow
@pytest.mark.parametrize("select", [None, ["category", "title"]])
def test_cached_search_equals_uncached(project, encoder, select):
    jammi = Jammi(project, recover_on_open=False)
    for text in ["kitchen tools", "music"]:
        q = query(encoder, text)
        for kwargs in ({"k": 8}, {"k": 3, "filter": "price < 100"}, {"k": 5, "exact": True}):
            cached = jammi.search("items", vector=q, select=select, **kwargs)
            pd.testing.assert_frame_equal(cached, uncached_search(project, "items", vector=q,
                                                                  select=select, **kwargs))


@pytest.mark.slow
def test_search_many_equals_a_loop_of_search(project, encoder):
    jammi = Jammi(project, recover_on_open=False)
    texts = ["coffee", "headphones for travel", "a mat for yoga", "kitchen"]
    for where in (None, "category = 'kitchen'"):
        batch = jammi.search_many("items", texts, k=3, filter=where)
        assert len(batch) == len(texts)
        for text, got in zip(texts, batch, strict=True):
            one = jammi.search("items", text, k=3, filter=where)
            assert got["_row_id"].tolist() == one["_row_id"].tolist()
            np.testing.assert_allclose(got["similarity"], one["similarity"], atol=1e-5)
    vectors = encoder.encode(texts)
    for q, got in zip(vectors, jammi.search_many("items", vectors, k=4), strict=True):
        pd.testing.assert_frame_equal(got, jammi.search("items", vector=q, k=4))


@pytest.mark.slow
def test_filtered_search_keeps_to_the_filter(project, encoder, opens):
    jammi = Jammi(project, recover_on_open=False)
    q = query(encoder, "something to cook with")
    got = jammi.search("items", vector=q, k=10, filter="category = 'kitchen' AND price > 50")
    assert sorted(got["_row_id"]) == ["2", "7"]
    assert (got["similarity"].diff().dropna() <= 0).all()
    exact = jammi.search("items", vector=q, k=10, filter="category = 'kitchen' AND price > 50", exact=True)
    pd.testing.assert_frame_equal(got, exact)
    assert opens["filter"] == 1  # the same filter again is answered from the cache
    with pytest.raises(Exception, match="only reading|one boolean expression|failed"):
        jammi.search("items", vector=q, k=3, filter="1=1; DROP TABLE x")


def test_key_lookup_equals_the_join(tmp_path):
    """Column order and dtypes (nullable ints and bools only when a null is taken, dates as
    datetime64), hit order, and hits whose key the frame lacks left out."""
    table = pa.table({
        "id": pa.array([10, 11, 12, 13], pa.int64()),
        "n": pa.array([1, None, 3, 4], pa.int64()),
        "flag": pa.array([True, None, False, True]),
        "day": pa.array([dt.date(2024, 1, 1), None, dt.date(2024, 3, 1), dt.date(2024, 4, 1)]),
        "at": pa.array([dt.datetime(2024, 1, 1, 5), None, None, dt.datetime(2024, 1, 2)], pa.timestamp("ns")),
        "name": pa.array(["a", None, "c", "d"]),
        "price": pa.array([1.5, None, 2.5, 3.0]),
    })
    path = tmp_path / "frame.parquet"
    pq.write_table(table, path)
    rows = SourceRows(path, "id")
    cols = ["name", "n", "flag", "day", "at", "price", "id"]
    for hits in ([("13", 0.9), ("99", 0.8), ("11", 0.5), ("10", 0.1)], [("12", 0.7), ("10", 0.2)]):
        pd.testing.assert_frame_equal(rows.attach(cols, hits), _attach_columns(path, "id", cols, hits))
    none, joined_none = rows.attach(cols, [("99", 0.5)]), _attach_columns(path, "id", cols, [])
    assert none.empty and list(none.columns) == list(joined_none.columns)
    # the join typed an empty result's similarity as object; the lookup keeps it float64
    pd.testing.assert_series_equal(none.dtypes.drop("similarity"), joined_none.dtypes.drop("similarity"))
    assert none["similarity"].dtype == np.float64


def test_converted_columns_equal_the_join_for_every_plain_type(tmp_path):
    """The pandas frame built from columns converted once (FrameColumn) against DuckDB's join:
    narrow and unsigned ints, nulls taken or not, a frame written from pandas with nullable
    dtypes in its metadata (which DuckDB ignores), and a repeated column (the Arrow path)."""
    frame = pd.DataFrame({
        "id": pd.array([1, 2, 3, 4, 5], dtype="Int64"),
        "small": pd.array([1, None, 3, 4, 5], dtype="Int32"),
        "u": np.array([7, 8, 9, 10, 11], dtype=np.uint16),
        "ok": pd.array([True, False, None, True, False], dtype="boolean"),
        "name": pd.array(["a", "b", None, "d", "e"], dtype="string"),
        "score": pd.array([0.5, None, 1.5, 2.0, 2.5], dtype="Float64"),
        "at": pd.to_datetime(["2024-01-01", None, "2024-01-03", "2024-01-04", "2024-01-05"]),
    })
    path = tmp_path / "frame.parquet"
    frame.to_parquet(path)  # keeps pandas metadata
    rows = SourceRows(path, "id")
    cols = list(frame.columns)
    for hits in ([("5", 0.9), ("1", 0.8)], [("2", 0.9), ("3", 0.5), ("7", 0.4), ("4", 0.1)], []):
        got = rows.attach(cols, hits)
        pd.testing.assert_frame_equal(got, _attach_columns(path, "id", cols, hits), check_dtype=bool(hits))
        pd.testing.assert_frame_equal(got, rows_module.to_pandas_as_duckdb(rows.attach_table(cols, hits)))
    got = rows.attach(cols, [("5", 0.9), ("1", 0.8)])
    assert got["small"].dtype == np.int32 and got["u"].dtype == np.uint16 and got["ok"].dtype == np.bool_
    nulls = rows.attach(cols, [("2", 0.9), ("3", 0.5)])
    assert str(nulls["small"].dtype) == "Int32" and str(nulls["ok"].dtype) == "boolean"
    assert nulls["name"].tolist() == ["b", None] and nulls["score"].isna().tolist() == [True, False]
    repeated = rows.attach(["name", "name", "id"], [("4", 0.3)])  # names repeat: built from Arrow
    assert list(repeated.columns) == ["name", "name", "id", "_row_id", "similarity"]
    assert repeated.iloc[0].tolist() == ["d", "d", 4, "4", 0.3]
