"""jammi.checksums: a file's digest is taken as it is written, compared on first use, and
remembered by the file's identity, so a node hashes an unchanged file once and a changed one
again; `fresh` always hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jammi import checksums, store
from jammi.tables.versions import DamagedFile, FileRef, Version, check_files, intact, write_deletes


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))
    checksums.forget()
    yield
    checksums.forget()


@pytest.fixture
def hashed(monkeypatch) -> list[Path]:
    """The files hashed from now on, in order."""
    seen: list[Path] = []
    real = checksums.file_digest

    def counting(path: Path) -> str:
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(checksums, "file_digest", counting)
    return seen


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_write_object_returns_the_digest_of_what_it_wrote(tmp_path):
    target = tmp_path / "a.bin"
    digest = store.write_object(target, lambda tmp: tmp.write_bytes(b"jammi" * 1000))
    assert digest == "sha256:" + hashlib.sha256(b"jammi" * 1000).hexdigest()
    assert store.put_file(_local(tmp_path, b"xyz"), tmp_path / "b.bin") == \
        "sha256:" + hashlib.sha256(b"xyz").hexdigest()


def _local(folder: Path, data: bytes) -> Path:
    path = folder / "spool.tmp"
    path.write_bytes(data)
    return path


def test_a_written_file_is_not_hashed_again_and_a_changed_one_is(tmp_path, hashed):
    target = tmp_path / "seg.parquet"
    digest = store.write_object(target, lambda tmp: tmp.write_bytes(bytes(range(256)) * 64))
    checksums.written(target, digest)
    assert checksums.matches(target, digest)
    assert hashed == []  # known from the write
    flip(target, 100)
    assert not checksums.matches(target, digest)
    assert hashed == [target]
    flip(target, 100)  # the bytes are back, the identity (times) is new: hashed again, and right
    assert checksums.matches(target, digest)
    assert len(hashed) == 2


def test_another_process_reuses_what_this_node_hashed_unless_fresh(tmp_path, hashed):
    target = tmp_path / "rows.parquet"
    target.write_bytes(b"x" * 5000)
    digest = checksums.digest_of(target)
    assert hashed == [target]
    checksums.forget()  # a new process: only the file in the cache folder remembers
    assert checksums.digest_of(target) == digest
    assert hashed == [target]
    assert checksums.digest_of(target, fresh=True) == digest
    assert hashed == [target, target]
    known = json.loads((tmp_path / "cache" / checksums.KNOWN_FILE).read_text())
    assert list(known.values()) == [digest]


def test_a_damaged_cache_file_only_costs_a_hash(tmp_path, hashed):
    target = tmp_path / "f.bin"
    target.write_bytes(b"abc")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / checksums.KNOWN_FILE).write_text("{not json", encoding="utf-8")
    assert checksums.matches(target, "sha256:" + hashlib.sha256(b"abc").hexdigest())
    assert hashed == [target]


def test_no_recorded_digest_means_files_from_before_checksums_are_read_as_before(tmp_path):
    target = tmp_path / "old.parquet"
    target.write_bytes(b"anything")
    assert checksums.matches(target, None)
    assert intact(tmp_path, FileRef("old.parquet", 1)) == tmp_path / "old.parquet"


def test_a_version_file_that_does_not_match_is_named_with_the_fix(tmp_path):
    ref = write_deletes(tmp_path / "t.v00001-ab.deletes.parquet", [("t.parquet", "1"), ("t.parquet", "2")])
    assert ref.digest and ref.to_json()["digest"] == ref.digest
    assert FileRef.from_json(ref.to_json()) == ref
    table = pq.read_table(tmp_path / ref.file)
    pq.write_table(pa.table({"_segment": ["t.parquet"] * 2, "_row_id": ["1", "3"]},
                            schema=table.schema), tmp_path / ref.file)  # valid Parquet, other rows
    with pytest.raises(DamagedFile) as err:
        intact(tmp_path, ref, pipeline="items")
    assert str(tmp_path / ref.file) in str(err.value)
    assert "checksum recorded when it was written" in str(err.value)
    assert "jammi verify items --repair" in str(err.value)
    with pytest.raises(DamagedFile):
        check_files(tmp_path, Version("t", 1, (), (ref,), 0), "items")
