"""Refreshing a table in place: compare the validated rows' keys and content hashes with the
table's current version, embed only added and changed rows, and commit them as a new version
(one segment plus a deletion file); unchanged rows keep their vectors. Compaction folds a
version's segments and deletions into one segment; expiry removes old versions' files.

Nothing here loads the model unless a row needs encoding: the encoder is used lazily.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jammi import checksums, store
from jammi.embedding.batching import BatchSizer
from jammi.embedding.model import Encoder
from jammi.embedding.vectors import vectors_of
from jammi.errors import ArtifactError
from jammi.quality.outcome import blocking_failures
from jammi.spec.project import IndexSpec, PipelineSpec, SourceSpec
from jammi.store import Location
from jammi.tables.build import EmbedStats, SourceRows, doc_column, encode_rows, source_rows
from jammi.tables.catalog import Catalog, TableRecord, with_sidecars
from jammi.tables.contract import (
    PARTITION_COLUMN,
    ROW_GROUP_ROWS,
    SUFFIXES,
    manifest_index_spec,
    sidecar,
    table_schema,
)
from jammi.tables.cost import run_usage
from jammi.tables.index import build_index, segment_base
from jammi.tables.segments import SEGMENT_ROWS, SegmentWriter
from jammi.tables.versions import (
    OUTCOME_COMPACTED,
    OUTCOME_NO_CHANGE,
    OUTCOME_REFRESHED,
    SEGMENT_COLUMN,
    Counts,
    FileRef,
    Version,
    check_files,
    deleted_by_segment,
    deletes_name,
    read_current,
    version_stem,
    write_deletes,
)

MAX_SEGMENTS = 8  # past this many segments, or
MAX_DELETED_SHARE = 0.25  # this share of deleted rows per current row, a refresh compacts
Progress = Callable[[str], None]
Verify = Callable[[EmbedStats, Version], list]


@dataclass
class Diff:
    added: list[int] = field(default_factory=list)  # positions in SourceRows
    changed: list[int] = field(default_factory=list)
    superseded: list[tuple[str, str]] = field(default_factory=list)  # (segment, row id) deleted
    deleted: int = 0
    unchanged: int = 0
    moved: int = 0  # keys another partition held, now this partition's (counted in `changed`)

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.superseded)


def diff_rows(source: SourceRows, table: pa.Table, pipeline: str, partition: str | None = None) -> Diff:
    """What must change in `table` (its current rows: `_row_id`, `_content_hash`, `_segment`,
    and `_partition` for a partition's run) for it to hold exactly `source`.

    For a partition's run, `table` holds the rows of that partition and the rows of any of its
    keys that another partition holds: such a key moves to this partition (the last partition
    run that saw a key owns it), and only this partition's rows can be deleted. A key the table
    holds twice is refused when the source still has it (which copy serves is unknown); when the
    source no longer has it, every copy is deleted like any row that left. Compared in
    Arrow (a hash join of the keys), so a million rows take a fraction of a second."""
    import pyarrow.compute as pc

    ids = table.column("_row_id").combine_chunks()
    keys, source_hashes = source.arrow()
    at = pc.index_in(keys, value_set=ids)  # each source row's position in the table, or null
    found = pc.is_valid(at).to_numpy(zero_copy_only=False)
    pos = at.drop_null().to_numpy()
    rows = np.flatnonzero(found)
    gone_mask = np.ones(len(ids), dtype=bool)
    gone_mask[pos] = False  # the table's rows no source row found (a repeated id's later copies too)
    gone_at = np.flatnonzero(gone_mask)
    if len(gone_at) and pc.any(pc.is_in(keys, value_set=ids.take(gone_at))).as_py():
        raise ArtifactError(f"pipeline {pipeline!r}: the table holds a key more than once; run "
                            f"`jammi verify {pipeline} --repair` or rebuild with --full")
    hashes = table.column("_content_hash").combine_chunks().take(pos)
    differs = pc.not_equal(hashes, source_hashes.take(rows))
    moved = np.zeros(len(pos), dtype=bool)
    if partition is not None:
        owner = table.column(PARTITION_COLUMN).combine_chunks().take(pos)
        moved = pc.fill_null(pc.not_equal(owner, partition), True).to_numpy(zero_copy_only=False)
    changed = differs.to_numpy(zero_copy_only=False) | moved
    diff = Diff(added=np.flatnonzero(~found).tolist(), changed=rows[changed].tolist(),
                unchanged=int(len(rows) - changed.sum()), moved=int(moved[changed].sum()))
    segments = table.column(SEGMENT_COLUMN).combine_chunks()
    diff.superseded = list(zip(segments.take(pos[changed]).to_pylist(),
                               [source.keys[i] for i in diff.changed], strict=True))
    if partition is not None and len(gone_at):  # only this partition's rows can be deleted
        mine = pc.fill_null(pc.equal(table.column(PARTITION_COLUMN).combine_chunks().take(gone_at),
                                     partition), False)
        gone_at = gone_at[mine.to_numpy(zero_copy_only=False)]
    diff.superseded += zip(segments.take(gone_at).to_pylist(), ids.take(gone_at).to_pylist(), strict=True)
    diff.deleted = len(gone_at)
    return diff


def scoped_rows(tables_dir: Location, version: Version, partition: str | None, keys: list[str]) -> pa.Table:
    """The version's current rows a run compares its source rows with (`_row_id`,
    `_content_hash`, `_segment`, and `_partition` for a partition's run): every row, or the rows
    of `partition` and those of its `keys` that other partitions hold."""
    if partition is None:
        return read_current(tables_dir, version, ["_content_hash"])
    import pyarrow.compute as pc

    rows = read_current(tables_dir, version, ["_content_hash", PARTITION_COLUMN])
    mine = pc.or_(pc.equal(rows.column(PARTITION_COLUMN), partition),
                  pc.is_in(rows.column("_row_id"), pa.array(keys, pa.string())))
    return rows.filter(mine)


def partition_rows_in(table: pa.Table, partition: str) -> int:
    """How many of `scoped_rows`' rows belong to `partition`."""
    import pyarrow.compute as pc

    return int(pc.sum(pc.equal(table.column(PARTITION_COLUMN), partition)).as_py() or 0)


def held_vectors(tables_dir: Location, base: Version, wanted: set[str],
                 dimensions: int) -> dict[str, np.ndarray]:
    """Vectors the table's segments hold for the content hashes in `wanted` (a changed or added
    row whose text another row has, or had: a content hash names the model and the exact text,
    so even a deleted row's vector is the right one): reused, not encoded again. Reads the hash
    column, then only the row groups that hold a wanted hash."""
    import pyarrow.compute as pc

    out: dict[str, np.ndarray] = {}
    if not wanted:
        return out
    for ref in base.segments:
        pf = store.parquet_file(store.join(tables_dir, ref.file))
        for group in range(pf.num_row_groups):
            hashes = pf.read_row_group(group, columns=["_content_hash"]).column("_content_hash")
            hit = pc.is_in(hashes, pa.array(sorted(wanted - out.keys()), pa.string()))
            if not pc.any(hit).as_py():
                continue
            rows = pf.read_row_group(group, columns=["_content_hash", "vector"]).filter(hit)
            vectors = vectors_of(rows.column("vector"), dimensions)
            for digest, vector in zip(rows.column("_content_hash").to_pylist(), vectors, strict=True):
                out.setdefault(digest, vector)
            if len(out) == len(wanted):
                return out
    return out


def _index_spec(rec: TableRecord) -> IndexSpec:
    return manifest_index_spec(rec.base_path)


def _next_number(catalog: Catalog, rec: TableRecord) -> int:
    return max(v.version for v in catalog.versions(rec.table_name)) + 1


def _write_segment(path: Location, rows: pa.Table) -> FileRef:
    digest = store.write_object(path, lambda tmp: pq.write_table(rows, tmp, compression="zstd",
                                                                 row_group_size=ROW_GROUP_ROWS))
    checksums.written(path, digest)
    return FileRef(store.name_of(path), rows.num_rows, digest)


def _remove(tables_dir: Location, stem: str) -> None:
    for suffix in (*SUFFIXES, ".deletes.parquet"):
        store.delete(store.join(tables_dir, f"{stem}{suffix}"))


def refresh_table(*, catalog: Catalog, rec: TableRecord, pipeline: str, pipe: PipelineSpec,
                  src: SourceSpec, source: str, frame_file: Path, encoder: Encoder,
                  progress: Progress | None = None, verify: Verify | None = None,
                  rows: SourceRows | None = None, partition: str | None = None) -> EmbedStats:
    """Bring `rec` (the pipeline's active table, same generation) up to the validated frame
    (whose rows with text, keys and hashes the caller may pass in as `rows`); with `partition`,
    only that partition's rows (`frame_file` is then the partition's frame)."""
    t0 = time.perf_counter()
    if rec.key_column != src.key:
        raise ArtifactError(f"pipeline {pipeline!r}: the key column changed from {rec.key_column!r} "
                            f"to {src.key!r} since {rec.table_name} was built; rebuild with "
                            f"`jammi materialize --select {pipeline} --full`")
    base = catalog.current_version(rec)
    check_files(rec.tables_dir, base, pipeline)
    rows = rows or source_rows(frame_file, src.key, pipe.embedded_columns, rec.model_id, doc_column(pipe))
    current = scoped_rows(rec.tables_dir, base, partition, rows.keys)
    diff = diff_rows(rows, current, pipeline, partition)
    size = 32 if pipe.batch_size == "auto" else pipe.batch_size  # a refresh encodes too few to calibrate
    stats = EmbedStats(rec.table_name, rec.parquet_path, rec.model_id, rec.dimensions or 0,
                       rows_in=len(rows.keys) + rows.skipped, rows_skipped=rows.skipped,
                       batch_size_start=size, generation=rec.generation, version=base.version)
    stats.serving_rows = base.rows if partition is None else partition_rows_in(current, partition)
    if diff.empty:
        stats.rows_embedded = stats.serving_rows
        stats.table_rows = base.rows
        stats.seconds = time.perf_counter() - t0
        stats.counts = Counts(unchanged=diff.unchanged, outcome=OUTCOME_NO_CHANGE,
                              seconds=round(stats.seconds, 3), usage=run_usage(encoder, rows))
        catalog.log_refresh(pipeline, rec.table_name, base.version, stats.counts)
        if needs_compaction(base):  # a compaction that was killed is done by the next run
            stats.version = compact_table(catalog, rec, pipeline).version
        return stats
    todo = diff.added + diff.changed
    if progress:
        progress(f"{source}: refreshing {rec.table_name} v{base.version}: {len(diff.added)} added, "
                 f"{len(diff.changed)} changed, {diff.deleted} deleted, {diff.unchanged} unchanged")
    number = _next_number(catalog, rec)
    stem = version_stem(rec.table_name, number)
    tables_dir = rec.tables_dir
    try:
        sizer = BatchSizer(size=size)
        known = held_vectors(rec.tables_dir, base, {rows.hashes[i] for i in todo}, stats.dimensions)
        keys, texts, doc_ids, _ = rows.take(todo)
        parts = None if partition is None else [partition] * len(todo)
        new_rows = encode_rows(encoder, source, keys, texts, sizer, stats, doc_ids, known,
                               parts) if todo else table_schema(
            stats.dimensions, rows.doc_ids is not None, partition is not None).empty_table()
        segments, sidecars = base.segments, base.sidecars
        if new_rows.num_rows:
            segments = (*segments, _write_segment(store.join(tables_dir, f"{stem}.parquet"), new_rows))
            sidecars = (*sidecars, *build_index(store.join(tables_dir, stem), stats.dimensions,
                                                _index_spec(rec)).digests)
        deletes = base.deletes
        if diff.superseded:
            deletes = (*deletes, write_deletes(store.join(tables_dir, deletes_name(stem)), diff.superseded))
        total = base.rows - len(diff.superseded) + new_rows.num_rows
        stats.table_rows = total
        stats.rows_embedded = total if partition is None else diff.unchanged + new_rows.num_rows
        stats.batch_size_end, stats.oom_events = sizer.size, sizer.oom_events
        stats.seconds = time.perf_counter() - t0
        sent = {rows.hashes[i] for i in todo} - known.keys()
        stats.counts = Counts(len(diff.added), len(diff.changed), diff.deleted, diff.unchanged,
                              stats.rows_encoded, OUTCOME_REFRESHED, round(stats.seconds, 3),
                              run_usage(encoder, rows, sent))
        version = Version(rec.table_name, number, segments, deletes, total, stats.counts, sidecars=sidecars)
        stats.outcomes = verify(stats, version) if verify else []
        stats.blocked_by = [o.name for o in blocking_failures(stats.outcomes)]
        if stats.blocked_by:
            _remove(tables_dir, stem)
            return stats
        catalog.commit_version(pipeline, version, base, sidecars[len(base.sidecars):])
    except BaseException:
        _remove(tables_dir, stem)
        raise
    stats.version = number
    if needs_compaction(version):
        stats.version = compact_table(catalog, catalog.table(rec.table_name), pipeline).version
    return stats


def _small(ref: FileRef) -> bool:
    return ref.rows < SEGMENT_ROWS // 2


def needs_compaction(version: Version) -> bool:
    """Past MAX_SEGMENTS small segments (refreshes and partition runs each add one), or past
    MAX_DELETED_SHARE deleted rows per current row."""
    return (sum(map(_small, version.segments)) > MAX_SEGMENTS
            or version.deleted_rows > MAX_DELETED_SHARE * max(1, version.rows))


def compact_table(catalog: Catalog, rec: TableRecord, pipeline: str) -> Version:
    """Rewrite the small segments and every segment with deleted rows into new segments of up
    to SEGMENT_ROWS current rows, each with a fresh index, as a new version; large segments
    without deletions are kept as they are. Streamed one row group at a time, so its memory is
    bounded by a segment's index whatever the table's size."""
    t0 = time.perf_counter()
    base = catalog.current_version(rec)
    check_files(rec.tables_dir, base, pipeline)
    deleted = deleted_by_segment(rec.tables_dir, base)
    redo = [ref for ref in base.segments if _small(ref) or deleted.get(ref.file)]
    kept = tuple(ref for ref in base.segments if ref not in redo)
    number = _next_number(catalog, rec)
    names = (store.join(rec.tables_dir, f"{version_stem(rec.table_name, number)}.parquet")
             for _ in iter(int, 1))
    schema = store.parquet_file(store.join(rec.tables_dir, base.segments[0].file)).schema_arrow
    writer = SegmentWriter(names, schema, SEGMENT_ROWS)
    try:
        for ref in redo:
            _copy_current(store.join(rec.tables_dir, ref.file), deleted.get(ref.file, set()), writer)
        written = writer.close()
        built = tuple(d for ref in written for d in build_index(
            segment_base(rec.tables_dir, ref), rec.dimensions or 0, _index_spec(rec)).digests)
        rows = sum(r.rows for r in (*kept, *written))
        counts = Counts(unchanged=rows, outcome=OUTCOME_COMPACTED, seconds=round(time.perf_counter() - t0, 3))
        version = with_sidecars(Version(rec.table_name, number, (*kept, *written), (), rows, counts),
                                {**base.sidecar_digests, **dict(built)})
        catalog.commit_version(pipeline, version, base, built)
    except BaseException:
        writer.discard()
        for ref in writer.done:
            _remove(rec.tables_dir, store.name_of(ref[0]).removesuffix(".parquet"))
        raise
    return version


def _copy_current(path: Location, gone: set[str], writer: SegmentWriter) -> None:
    """The rows of segment `path` not in `gone`, into `writer`, one row group at a time."""
    import pyarrow.compute as pc

    pf = store.parquet_file(path)
    dropped = pa.array(sorted(gone), pa.string())
    for group in range(pf.num_row_groups):
        rows = pf.read_row_group(group)
        if gone:
            rows = rows.filter(pc.invert(pc.is_in(rows.column("_row_id"), dropped)))
        writer.write(rows.cast(writer.schema))


def version_files(tables_dir: Location, version: Version) -> set[Location]:
    """Every file a version reads: segments with their sidecars, and deletion files."""
    out = {store.join(tables_dir, d.file) for d in version.deletes}
    for ref in version.segments:
        base = segment_base(tables_dir, ref)
        out |= {store.join(tables_dir, ref.file), sidecar(base, ".usearch"), sidecar(base, ".rowmap")}
    return out


def expire_versions(catalog: Catalog, rec: TableRecord, keep: int) -> list[Location]:
    """Forget all but the newest `keep` versions (and the current one) and delete the files
    only they used, and any version file no version names (left by a killed refresh)."""
    if keep < 1:
        raise ArtifactError("--keep must be at least 1")
    versions = catalog.versions(rec.table_name)
    kept = {v.version for v in versions[-keep:]} | {catalog.current_version(rec).version}
    live: set[Location] = set()
    for v in versions:
        if v.version in kept:
            live |= version_files(rec.tables_dir, v)
    catalog.drop_versions(rec.table_name, [v.version for v in versions if v.version not in kept])
    candidates = set(store.listdir(rec.tables_dir, f"{rec.table_name}.v*")) | set(
        store.listdir(rec.tables_dir, f".{rec.table_name}.v*.tmp"))  # what a killed refresh left
    if 0 not in kept:
        candidates |= {store.join(rec.tables_dir, f"{rec.table_name}{s}") for s in (".parquet", ".usearch",
                                                                                   ".rowmap")}
    deleted = []
    for path in sorted(candidates - live, key=str):
        if store.delete(path):
            deleted.append(path)
    return deleted
