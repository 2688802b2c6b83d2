"""Printing Arrow tables: a table of plain columns prints exactly as the pandas frame DuckDB would
give for it (what `jammi search` printed before it kept its rows as Arrow), in all three formats,
without importing pandas; any other table is printed through that frame."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jammi.query.rows import to_pandas_as_duckdb
from jammi.tables.arrays import cast, float64s, int64s, strings, take
from jammi.terminal import render
from tests.conftest import REPO

FORMATS = ("table", "json", "csv")


def plain_table() -> pa.Table:
    return pa.table({
        "id": pa.array([1601, 2, None], pa.int64()),
        "small": pa.array([1, 2, 3], pa.uint8()),
        "title": ['Cobalt, "quiet" headphones', "two\nlines", None],
        "price": pa.array([311.53, float("nan"), None], pa.float64()),
        "f32": pa.array([0.5165, 1e-7, None], pa.float32()),
        "wide": pa.array([1e16, 1e-5, 123456789.123], pa.float64()),
        "flag": pa.array([True, None, False]),
        "flag2": pa.array([True, True, False]),
        "day": pa.array([dt.date(2024, 9, 12), None, dt.date(1999, 1, 1)], pa.date32()),
        "seconds": pa.array([dt.datetime(2024, 9, 12, 10, 11, 12), None, dt.datetime(2024, 1, 1)],
                            pa.timestamp("us")),
        "millis": pa.array([dt.datetime(2024, 9, 12, 10, 11, 12, 5000), dt.datetime(2024, 1, 1), None],
                           pa.timestamp("us")),
        "micros": pa.array([dt.datetime(2024, 9, 12, 10, 11, 12, 5), dt.datetime(2024, 1, 1), None],
                           pa.timestamp("us")),
        "midnights": pa.array([1726099200000000000, 1726185600000000000, None], pa.timestamp("ns")),
        "_row_id": ["1601", "2", "x"],
        "similarity": [0.5165046095848083, 0.1, -0.0],
    })


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("part", ["all", "no rows", "one text column", "empty text", "numbers"])
def test_plain_arrow_prints_as_its_duckdb_frame(fmt, part):
    table = plain_table()
    table = {"all": table, "no rows": table.slice(0, 0), "one text column": table.select(["title"]),
             "empty text": pa.table({"t": ["", "x"]}),
             "numbers": table.select(["id", "f32", "similarity"])}[part]
    assert render(table, fmt) == render(to_pandas_as_duckdb(table), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_other_arrow_columns_print_through_the_frame(fmt):
    table = pa.table({
        "vector": pa.array([[0.5, 0.25, 1.0, 2.0], [1.0, 0.0, 0.0, 0.0]], pa.list_(pa.float32())),
        "nanos": pa.array([1726049471000000001, 1726049471000000000], pa.timestamp("ns")),
        "key": ["a", "b"],
    })
    text = render(table, fmt)
    assert text == render(to_pandas_as_duckdb(table), fmt)
    assert "2024-09-11" in text and "a" in text


@pytest.mark.slow
def test_plain_arrow_prints_without_pandas(tmp_path):
    pq.write_table(plain_table(), tmp_path / "rows.parquet")
    code = ("import sys, pyarrow.parquet as pq; from jammi.terminal import render; "
            f"t = pq.ParquetFile({str(tmp_path / 'rows.parquet')!r}).read(); "
            "texts = [render(t, f) for f in ('table', 'json', 'csv')]; print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_arrays_built_without_pa_array_equal_pa_array():
    texts = ["", "héllo", "1601", "a" * 300]
    for built, expected in [(strings(texts), pa.array(texts, pa.string())),
                            (int64s(np.array([3, -1, 2**40])), pa.array([3, -1, 2**40], pa.int64())),
                            (float64s([0.5, -0.0, 1e300]), pa.array([0.5, -0.0, 1e300], pa.float64())),
                            (strings([]), pa.array([], pa.string())), (int64s([]), pa.array([], pa.int64()))]:
        built.validate(full=True)
        assert built.equals(expected)
    table = pa.table({"k": ["a", "b", "c"], "v": [1, 2, 3]})
    assert take(table, int64s([2, 0])).to_pylist() == [{"k": "c", "v": 3}, {"k": "a", "v": 1}]
    assert cast(pa.chunked_array([[1, -20]]), pa.string()).to_pylist() == ["1", "-20"]
    with pytest.raises(pa.ArrowInvalid):
        cast(pa.array([1726049471000000001], pa.timestamp("ns")), pa.timestamp("us"))
    with pytest.raises(IndexError):
        take(table, int64s([3]))
