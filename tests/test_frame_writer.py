"""FrameWriter: batches stream into one file while their types agree; a batch whose types
differ starts part files that `close` joins, unified; `files()` makes what was written readable
mid-write (the key ledger rereads it) and writing goes on after it."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from jammi.storage import FrameWriter


def _batch(start: int, n: int, **extra) -> pd.DataFrame:
    return pd.DataFrame({"id": range(start, start + n), "title": [f"t{i}" for i in range(start, start + n)],
                         **extra})


def test_batches_of_one_schema_stream_into_one_file(tmp_path):
    target = tmp_path / "f.parquet"
    w = FrameWriter(target)
    for i in range(3):
        w.write(_batch(i * 10, 10))
    assert w.parts == []  # nothing sealed: one streamed file
    w.close()
    pf = pq.ParquetFile(target)
    assert pf.metadata.num_rows == 30 and pf.num_row_groups == 3
    assert pd.read_parquet(target)["id"].tolist() == list(range(30))
    assert not w.parts_dir.exists()


def test_a_batch_with_other_types_is_joined_unified(tmp_path):
    target = tmp_path / "f.parquet"
    w = FrameWriter(target)
    w.write(_batch(0, 3, note=[None, None, None]))  # all null: no type yet
    w.write(_batch(3, 3, note=["a", None, "c"]))
    w.write(_batch(6, 2, note=[1.5, 2.0]))  # numbers after text: text
    w.close()
    got = pd.read_parquet(target)
    assert got["id"].tolist() == list(range(8))
    assert got["note"].tolist()[:6] == [None, None, None, "a", None, "c"]
    assert pq.read_schema(target).field("note").type == "string"


def test_files_reads_what_was_written_and_writing_goes_on(tmp_path):
    target = tmp_path / "f.parquet"
    w = FrameWriter(target)
    w.write(_batch(0, 5))
    seen = pd.concat([pd.read_parquet(p) for p in w.files()])
    assert seen["id"].tolist() == list(range(5))
    w.write(_batch(5, 5))
    w.close()
    assert pd.read_parquet(target)["id"].tolist() == list(range(10))


def test_discard_leaves_nothing(tmp_path):
    target = tmp_path / "f.parquet"
    w = FrameWriter(target)
    w.write(_batch(0, 5))
    w.discard()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        pq.ParquetFile(target)
