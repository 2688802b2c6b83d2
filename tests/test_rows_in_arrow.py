"""The embedding step reads a frame's rows and diffs them with the table in Arrow; these pin
that it gives exactly what the pandas and dict paths it replaced gave."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from jammi.embedding.texts import compose_batch, compose_texts
from jammi.errors import ArtifactError
from jammi.tables.build import SourceRows, keyed_batch, keyed_rows
from jammi.tables.contract import PARTITION_COLUMN
from jammi.tables.refresh import diff_rows
from jammi.tables.versions import SEGMENT_COLUMN

ODD = ["kettle", "", " ", "\u2003", "\x1f", None, " tea pot ", "caf\u00e9", "a\tb", "\n"]


def test_compose_batch_gives_the_strings_compose_texts_gives():
    frame = pd.DataFrame({"a": ODD, "b": list(reversed(ODD))})
    batch = pa.RecordBatch.from_pandas(frame, preserve_index=False)
    assert compose_batch(batch, ["a", "b"]) == compose_texts(frame, ["a", "b"])
    assert compose_batch(batch, ["a"]) == compose_texts(frame, ["a"])
    assert compose_batch(batch, ["a"])[:6] == ["kettle", None, None, None, None, None]


def test_compose_batch_of_other_types_goes_through_pandas():
    frame = pd.DataFrame({"title": ["x", None, "z"], "price": [1.5, None, 3.0]})
    batch = pa.RecordBatch.from_pandas(frame, preserve_index=False)
    assert compose_batch(batch, ["title", "price"]) == ["x 1.5", None, "z 3.0"]


def test_keyed_batch_matches_keyed_rows_for_int_and_string_keys():
    for keys in ([3, 1, 2, 10], ["k3", "k1", "k2", "k10"]):
        frame = pd.DataFrame({"id": keys, "t": ["one", " ", "three", None]})
        batch = pa.RecordBatch.from_pandas(frame, preserve_index=False)
        assert keyed_batch(batch, "id", ["t"]) == keyed_rows(frame, "id", ["t"])
        assert keyed_batch(batch, "id", ["t"])[0] == [str(keys[0]), str(keys[2])]


def _table(rows: list[tuple[str, str, str, str | None]]) -> pa.Table:
    ids, hashes, segments, parts = zip(*rows, strict=True)
    return pa.table({"_row_id": list(ids), "_content_hash": list(hashes),
                     SEGMENT_COLUMN: list(segments), PARTITION_COLUMN: pa.array(parts, pa.string())})


def test_diff_of_a_whole_table():
    table = _table([("a", "h1", "s0", None), ("b", "h2", "s0", None), ("c", "h3", "s1", None)])
    source = SourceRows(keys=["b", "a", "d"], hashes=["h2", "h9", "h4"], text_of={}, skipped=0)
    diff = diff_rows(source, table, "p")
    assert (diff.added, diff.changed, diff.unchanged, diff.deleted) == ([2], [1], 1, 1)
    assert diff.superseded == [("s0", "a"), ("s1", "c")]
    assert diff.moved == 0


def test_diff_of_a_partition_moves_keys_and_deletes_only_its_own_rows():
    table = _table([("a", "h1", "s0", "d1"), ("b", "h2", "s0", "d1"), ("c", "h3", "s1", "d2"),
                    ("e", "h5", "s1", "d1")])
    source = SourceRows(keys=["a", "c"], hashes=["h1", "h3"], text_of={}, skipped=0)
    diff = diff_rows(source, table, "p", partition="d1")
    # "c" moves from d2 with its text unchanged; "b" and "e" left d1; nothing of d2 is deleted
    assert (diff.added, diff.changed, diff.unchanged, diff.deleted, diff.moved) == ([], [1], 1, 2, 1)
    assert diff.superseded == [("s1", "c"), ("s0", "b"), ("s1", "e")]


def test_a_key_held_twice_is_refused_with_the_repair():
    table = _table([("a", "h1", "s0", None), ("a", "h2", "s1", None)])
    source = SourceRows(keys=["a"], hashes=["h1"], text_of={}, skipped=0)
    with pytest.raises(ArtifactError, match=r"more than once.*jammi verify items --repair"):
        diff_rows(source, table, "items")


def test_a_key_held_twice_and_gone_from_the_source_loses_every_copy():
    table = _table([("a", "h1", "s0", None), ("b", "h2", "s0", None), ("b", "h2", "s1", None)])
    source = SourceRows(keys=["a"], hashes=["h1"], text_of={}, skipped=0)
    diff = diff_rows(source, table, "items")
    assert (diff.unchanged, diff.deleted) == (1, 2)
    assert sorted(diff.superseded) == [("s0", "b"), ("s1", "b")]
