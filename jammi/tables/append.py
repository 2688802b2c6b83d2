"""Committing a batch of rows to a table in O(batch): the stream worker's path.

A refresh (jammi.tables.refresh) diffs the whole validated frame against the whole table, which
is O(table) per commit. A stream batch is a handful of rows, so its commit only looks up the
batch's keys in a `KeyState` (row id -> content hash and segment of the current version, read
once and then kept up to date by the commits themselves), embeds the added and changed rows,
and writes one segment with its HNSW sidecar plus, for changed keys, a deletion file. A key
whose content hash is already current is unchanged: a redelivered event adds no second row.

Segments pile up one per batch, so past `MAX_STREAM_SEGMENTS` the small ones after the first
are merged into one (cost: the rows since the last merge), and the whole table is compacted
only when those outgrow the first segment or deletions pass a quarter of the rows (each row is
so rewritten a logarithmic number of times over the table's growth).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jammi import checksums, store
from jammi.embedding.encode import BatchSizer
from jammi.embedding.model import Encoder
from jammi.embedding.texts import content_hash
from jammi.errors import ArtifactError
from jammi.store import Location
from jammi.tables.build import EmbedStats, encode_rows
from jammi.tables.catalog import Catalog, TableRecord, with_sidecars
from jammi.tables.contract import manifest_index_spec
from jammi.tables.index import build_index
from jammi.tables.refresh import compact_table
from jammi.tables.versions import (
    SEGMENT_COLUMN,
    Counts,
    FileRef,
    Version,
    deleted_by_segment,
    deletes_name,
    read_current,
    read_ref,
    version_stem,
    write_deletes,
)

OUTCOME_APPENDED = "appended"
OUTCOME_MERGED = "merged"
MAX_STREAM_SEGMENTS = 16
MAX_DELETED_SHARE = 0.25


@dataclass
class KeyState:
    """The current version of a table as its one writer keeps it between commits: the version,
    the next version number, and its rows: row id -> (content hash, segment file)."""

    table_name: str
    base: Version
    next_number: int
    rows: dict[str, tuple[str, str]]

    @property
    def version(self) -> int:
        return self.base.version

    def serves(self, rec: TableRecord) -> bool:
        """Whether `rec` (as just read from the catalog) still serves the version kept here."""
        return rec.table_name == self.table_name and (rec.current_version or 0) == self.base.version


def key_state(catalog: Catalog, rec: TableRecord) -> KeyState:
    """Read the keys of `rec`'s current version (O(table), once per worker or foreign commit)."""
    version = catalog.current_version(rec)
    table = read_current(rec.tables_dir, version, ["_content_hash"])
    rows = dict(zip(table.column("_row_id").to_pylist(),
                    zip(table.column("_content_hash").to_pylist(), table.column(SEGMENT_COLUMN).to_pylist(),
                        strict=True), strict=True))
    return KeyState(rec.table_name, version, catalog.next_version_number(rec.table_name), rows)


@dataclass
class Appended:
    """What one batch commit did."""

    version: int
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    rows_encoded: int = 0
    rows_failed: int = 0
    rows: int = 0  # current rows of the table after the commit
    seconds: float = 0.0

    @property
    def committed(self) -> bool:
        return bool(self.added or self.changed)


def _write_segment(path: Location, rows: pa.Table) -> FileRef:
    digest = store.write_object(path, lambda tmp: pq.write_table(rows, tmp, compression="zstd"))
    checksums.written(path, digest)
    return FileRef(store.name_of(path), rows.num_rows, digest)


def _remove(tables_dir: Location, stem: str) -> None:
    for suffix in (".parquet", ".usearch", ".rowmap", ".deletes.parquet"):
        store.delete(store.join(tables_dir, f"{stem}{suffix}"))


def append_rows(*, catalog: Catalog, rec: TableRecord, state: KeyState, pipeline: str, source: str,
                keys: list[str], texts: list[str], encoder: Encoder, batch_size: int) -> Appended:
    """Commit the rows (unique `keys` with their texts) whose content is not current yet as one
    new version of `rec`, which must still serve `state.version` (else ArtifactError: reload)."""
    t0 = time.perf_counter()
    if not state.serves(rec):
        raise ArtifactError(f"pipeline {pipeline!r}: {rec.table_name} is at version {rec.current_version}, "
                            f"the worker's keys are of version {state.version}; reload them")
    base = state.base
    todo, superseded, unchanged = [], [], 0
    for i, (key, text) in enumerate(zip(keys, texts, strict=True)):
        old = state.rows.get(key)
        if old is None:
            todo.append(i)
        elif old[0] != content_hash(rec.model_id, text):
            todo.append(i)
            superseded.append((old[1], key))
        else:
            unchanged += 1
    done = Appended(base.version, unchanged=unchanged, rows=base.rows)
    if not todo:
        done.seconds = time.perf_counter() - t0
        return done
    number = state.next_number
    stem = version_stem(rec.table_name, number)
    tables_dir = rec.tables_dir
    stats = EmbedStats(rec.table_name, rec.parquet_path, rec.model_id, rec.dimensions or 0)
    try:
        new_rows = encode_rows(encoder, source, [keys[i] for i in todo], [texts[i] for i in todo],
                               BatchSizer(size=batch_size), stats)
        written = set(new_rows.column("_row_id").to_pylist())
        superseded = [(seg, key) for seg, key in superseded if key in written]  # a failed text keeps its row
        segments = base.segments
        built: tuple[tuple[str, str], ...] = ()
        if new_rows.num_rows:
            segments = (*segments, _write_segment(store.join(tables_dir, f"{stem}.parquet"), new_rows))
            built = build_index(store.join(tables_dir, stem), stats.dimensions,
                                manifest_index_spec(rec.base_path)).digests
        deletes = base.deletes
        if superseded:
            deletes = (*deletes, write_deletes(store.join(tables_dir, deletes_name(stem)), superseded))
        done.changed = len(superseded)
        done.added = new_rows.num_rows - done.changed
        done.rows_encoded, done.rows_failed = stats.rows_encoded, stats.rows_failed
        done.rows = base.rows - len(superseded) + new_rows.num_rows
        done.seconds = time.perf_counter() - t0
        if not done.committed:
            _remove(tables_dir, stem)
            return done
        counts = Counts(done.added, done.changed, 0, unchanged, done.rows_encoded, OUTCOME_APPENDED,
                        round(done.seconds, 3))
        version = Version(rec.table_name, number, segments, deletes, done.rows, counts,
                          sidecars=(*base.sidecars, *built))
        catalog.commit_version(pipeline, version, base, built)
    except BaseException:
        _remove(tables_dir, stem)
        raise
    done.version = number
    _fill_hashes(state, new_rows, segments[-1].file)
    state.base, state.next_number = version, number + 1
    return done


def _fill_hashes(state: KeyState, rows: pa.Table, segment: str) -> None:
    for key, digest in zip(rows.column("_row_id").to_pylist(), rows.column("_content_hash").to_pylist(),
                           strict=True):
        state.rows[key] = (digest, segment)


def needs_merge(state: KeyState) -> bool:
    return len(state.base.segments) > MAX_STREAM_SEGMENTS


def merge_segments(catalog: Catalog, rec: TableRecord, pipeline: str, state: KeyState) -> Version:
    """Merge the segments after the first into one (a full compaction when they hold more rows
    than the first, or deletions pass MAX_DELETED_SHARE), as a new version; `state` follows."""
    base = state.base
    first, tail = base.segments[0], base.segments[1:]
    tail_rows = sum(r.rows for r in tail)
    if tail_rows >= first.rows or base.deleted_rows > MAX_DELETED_SHARE * max(1, base.rows):
        version = compact_table(catalog, catalog.table(rec.table_name), pipeline)
        segment = version.segments[0].file
        state.rows = {k: (h, segment) for k, (h, _) in state.rows.items()}
        state.base, state.next_number = version, version.version + 1
        return version
    t0 = time.perf_counter()
    deleted = deleted_by_segment(rec.tables_dir, base)
    number = state.next_number
    stem = version_stem(rec.table_name, number)
    parts = []
    for ref in tail:
        table = read_ref(rec.tables_dir, ref)
        gone = deleted.get(ref.file)
        if gone:
            table = table.filter(pc.invert(pc.is_in(table["_row_id"], pa.array(sorted(gone), pa.string()))))
        parts.append(table)
    try:
        merged = _write_segment(store.join(rec.tables_dir, f"{stem}.parquet"), pa.concat_tables(parts))
        built = build_index(store.join(rec.tables_dir, stem), rec.dimensions or 0,
                            manifest_index_spec(rec.base_path)).digests
        kept = sorted(deleted.get(first.file, ()))
        deletes = (write_deletes(store.join(rec.tables_dir, deletes_name(stem)),
                                 [(first.file, k) for k in kept]),) \
            if kept else ()
        counts = Counts(unchanged=base.rows, outcome=OUTCOME_MERGED,
                        seconds=round(time.perf_counter() - t0, 3))
        version = with_sidecars(Version(rec.table_name, number, (first, merged), deletes, base.rows, counts),
                                {**base.sidecar_digests, **dict(built)})
        catalog.commit_version(pipeline, version, base, built)
    except BaseException:
        _remove(rec.tables_dir, stem)
        raise
    state.rows = {k: (h, seg if seg == first.file else merged.file) for k, (h, seg) in state.rows.items()}
    state.base, state.next_number = version, number + 1
    return version
