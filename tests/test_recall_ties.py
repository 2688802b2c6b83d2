"""The ANN recall check counts ties as hits and never loads the whole table: a duplicate-heavy
table (one text under many keys) with a sound index passes where counting row ids fails it, a
broken index still fails, deleted rows stay out of the exact top-k, and the drift sample reads
real rows by position.

Tables here are contract Parquet written directly, with vectors drawn at random (no model: the
checks are about the index and the files, not about encoding)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jammi.embedding.vectors import to_vector_array
from jammi.spec.project import IndexSpec
from jammi.tables import checks as ec
from jammi.tables import versions
from jammi.tables.contract import sidecar, table_schema
from jammi.tables.index import VersionIndex, build_index
from jammi.tables.versions import FileRef, Version, write_deletes

DIMS = 384
K = 10


def _unit(rng: np.random.Generator, n: int, d: int = DIMS) -> np.ndarray:
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _write(path: Path, ids: list[str], vectors: np.ndarray, row_group_size: int = 700) -> None:
    n, d = vectors.shape
    pq.write_table(pa.table({
        "_row_id": pa.array(ids),
        "_source_id": pa.array(["s"] * n),
        "_model_id": pa.array(["m"] * n),
        "vector": to_vector_array(vectors),
        # as the contract has it: one content hash, one vector (the index keeps one per hash)
        "_content_hash": pa.array([hashlib.blake2b(v.tobytes(), digest_size=8).hexdigest() for v in vectors]),
    }, schema=table_schema(d)), path, row_group_size=row_group_size)


def _segment(tables_dir: Path, name: str, ids: list[str], vectors: np.ndarray) -> FileRef:
    """A segment `<name>.parquet` with its HNSW sidecars."""
    _write(tables_dir / f"{name}.parquet", ids, vectors)
    build_index(tables_dir / name, DIMS, IndexSpec())
    return FileRef(f"{name}.parquet", len(ids))


def _duplicate_heavy(tables_dir: Path) -> tuple[Version, np.ndarray]:
    """3,000 rows whose vectors are 150 distinct unit vectors, each under 20 row ids, shuffled."""
    rng = np.random.default_rng(0)
    vectors = np.repeat(_unit(rng, 150), 20, axis=0)[rng.permutation(3000)]
    ref = _segment(tables_dir, "dup", [f"r{i}" for i in range(3000)], vectors)
    return Version("dup", 0, (ref,), rows=3000), vectors


def _id_overlap_recall(tables_dir: Path, version: Version, vectors: np.ndarray) -> float:
    """Recall as the check once measured it: the share of the exact top-k's row ids that the ANN
    search returned, the exact top-k being numpy's pick among ties."""
    picks = np.random.default_rng(0).choice(len(vectors), size=200, replace=False)
    exact = np.argpartition(-(vectors[picks] @ vectors.T), K - 1, axis=1)[:, :K]
    found = VersionIndex(tables_dir, version, DIMS, IndexSpec()).search_many(vectors[picks], K)
    overlap = [len({r for r, _ in hits} & {f"r{j}" for j in top})
               for hits, top in zip(found, exact, strict=True)]
    return float(np.mean(overlap)) / K


def test_duplicates_are_ties_not_misses(tmp_path):
    version, vectors = _duplicate_heavy(tmp_path)
    out = ec.ann_recall(tmp_path, version, DIMS, IndexSpec())
    assert out.passed and out.statistic >= 0.95 and out.statistic == pytest.approx(1.0)
    assert out.details["queries"] == 200 and out.details["k"] == K and out.details["segments"] == 1
    assert "k-th similarity" in out.details["recall"] and out.examples == []
    # counting row ids, the same index on the same table fails: among 20 equal vectors the exact
    # top-10 is an arbitrary pick, which a right answer matches about half the time
    assert _id_overlap_recall(tmp_path, version, vectors) < 0.95


def test_a_broken_index_on_duplicate_heavy_rows_fails(tmp_path):
    version, vectors = _duplicate_heavy(tmp_path)
    # sidecars built from the same row ids with their vectors shuffled: they load (same counts),
    # and return rows whose real vectors are unrelated to the query
    shuffled = vectors[np.random.default_rng(1).permutation(len(vectors))]
    _write(tmp_path / "wrong.parquet", [f"r{i}" for i in range(len(vectors))], shuffled)
    build_index(tmp_path / "wrong", DIMS, IndexSpec())
    for suffix in (".usearch", ".rowmap"):
        shutil.copy(sidecar(tmp_path / "wrong", suffix), sidecar(tmp_path / "dup", suffix))
    out = ec.ann_recall(tmp_path, version, DIMS, IndexSpec())
    assert not out.passed and out.statistic < 0.2
    assert out.examples and all(e["hits"] < K for e in out.examples)


def _segments_with_deletions(tables_dir: Path) -> tuple[Version, dict[str, np.ndarray], set[str]]:
    """Two segments; version 1 deletes 900 rows of the first, each a near copy (cos ~0.999) of a
    current row, so a deleted row counted as current would displace the true k-th neighbour."""
    rng = np.random.default_rng(5)
    kept = _unit(rng, 2100)
    near = kept[:900] + 0.03 * _unit(rng, 900)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    first = np.concatenate([near, kept])
    first_ids = [f"d{i}" for i in range(900)] + [f"k{i}" for i in range(2100)]
    second, second_ids = _unit(rng, 1000), [f"n{i}" for i in range(1000)]
    refs = (_segment(tables_dir, "t", first_ids, first),
            _segment(tables_dir, "t.v00001-aa", second_ids, second))
    gone = set(first_ids[:900])
    deletes = write_deletes(tables_dir / versions.deletes_name("t.v00001-aa"),
                            [("t.parquet", r) for r in sorted(gone)])
    version = Version("t", 1, refs, (deletes,), rows=3000 + 1000 - 900)
    vectors = dict(zip(first_ids + second_ids, np.concatenate([first, second]), strict=True))
    return version, vectors, gone


@pytest.mark.slow
def test_recall_streams_current_rows_only(tmp_path, monkeypatch):
    version, vectors, gone = _segments_with_deletions(tmp_path)

    def whole_table(*_args, **_kwargs):
        raise AssertionError("the recall check must not load the whole table")

    read_table = pq.read_table

    def deletes_only(source, *args, **kwargs):  # deletion files are read whole; segments never
        if not str(source).endswith(".deletes.parquet"):
            whole_table()
        return read_table(source, *args, **kwargs)

    monkeypatch.setattr(versions, "read_current", whole_table)
    monkeypatch.setattr(pq, "read_table", deletes_only)
    monkeypatch.setattr(ec, "READ_BATCH", 512)  # several batches per segment
    out = ec.ann_recall(tmp_path, version, DIMS, IndexSpec())
    assert out.passed and out.statistic >= 0.95
    assert out.details["queries"] == 200 and out.details["segments"] == 2

    # the sampled queries are current rows, from both segments
    deleted = versions.deleted_by_segment(tmp_path, version)
    sample = ec._sample_current(tmp_path, version, deleted, 200, np.random.default_rng(0))
    ids = sample.column("_row_id").to_pylist()
    assert len(ids) == len(set(ids)) == 200 and not set(ids) & gone
    assert {i[0] for i in ids} == {"k", "n"}
    # the streamed k-th similarities are exact search over the current rows (not the deleted ones)
    queries = np.stack([vectors[i] for i in ids])
    kth, _ = ec._exact_similarities(tmp_path, version, deleted, queries, [[] for _ in ids], K, DIMS)
    current = np.stack([v for r, v in vectors.items() if r not in gone])
    expected = np.sort(queries @ current.T, axis=1)[:, -K]
    with_deleted = np.sort(queries @ np.stack(list(vectors.values())).T, axis=1)[:, -K]
    np.testing.assert_allclose(kth, expected, atol=1e-5)
    assert (with_deleted > expected + 1e-3).any()  # the deleted near copies would have mattered


def test_sample_reads_real_rows_deterministically(tmp_path, monkeypatch):
    rng = np.random.default_rng(9)
    vectors = _unit(rng, 1000, 16)
    path = tmp_path / "s.parquet"
    _write(path, [str(i) for i in range(1000)], vectors, row_group_size=64)
    monkeypatch.setattr(ec, "READ_BATCH", 10)  # batches inside row groups, across their edges
    got = ec._sample(path, 16, 50, seed=7)
    assert got.shape == (50, 16)
    rows = [int(np.flatnonzero((vectors == v).all(axis=1))[0]) for v in got]
    assert len(set(rows)) == 50 and rows == sorted(rows)
    # the rows the old whole-column read picked for this seed, and the same ones again
    picked = np.sort(np.random.default_rng(7).choice(1000, size=50, replace=False))
    np.testing.assert_array_equal(got, vectors[picked])
    np.testing.assert_array_equal(ec._sample(path, 16, 50, seed=7), got)
    assert not np.array_equal(ec._sample(path, 16, 50, seed=8), got)
    np.testing.assert_array_equal(ec._sample(path, 16, 5000, seed=1), vectors)  # all rows, in order


@pytest.mark.slow
def test_repeated_texts_are_indexed_once_and_found_with_every_row(tmp_path):
    """20,000 rows of 1,000 texts (20 rows each): the sidecar holds one vector a text, a search
    returns every row of the nearest text, and recall holds (an index of every row, whose 20
    copies of a point fill each other's neighbour lists, measured recall 0.94 on these rows)."""
    rng = np.random.default_rng(3)
    vectors = np.repeat(_unit(rng, 1000), 20, axis=0)[rng.permutation(20000)]
    ref = _segment(tmp_path, "rep", [f"r{i}" for i in range(20000)], vectors)
    version = Version("rep", 0, (ref,), rows=20000)
    index = VersionIndex(tmp_path, version, DIMS, IndexSpec())
    (_, ann, rowmap), = index.parts
    assert len(ann) == 1000 and len(rowmap) == 20000 and rowmap.keys == 1000
    hits = index.search(vectors[0], 20)
    twins = {f"r{i}" for i in np.flatnonzero((vectors == vectors[0]).all(axis=1))}
    assert {r for r, _ in hits} == twins and all(s == pytest.approx(1.0, abs=1e-5) for _, s in hits)
    assert ec.ann_recall(tmp_path, version, DIMS, IndexSpec()).statistic >= 0.95
