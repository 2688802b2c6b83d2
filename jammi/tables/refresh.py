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

from jammi.embedding.batching import BatchSizer
from jammi.embedding.model import Encoder
from jammi.embedding.vectors import vectors_of
from jammi.errors import ArtifactError
from jammi.quality.outcome import blocking_failures
from jammi.spec.project import IndexSpec, PipelineSpec, SourceSpec
from jammi.storage import tmp_path
from jammi.tables.build import EmbedStats, SourceRows, doc_column, encode_rows, source_rows
from jammi.tables.catalog import Catalog, TableRecord
from jammi.tables.contract import SUFFIXES, manifest_index_spec, table_schema
from jammi.tables.index import build_index, segment_base
from jammi.tables.versions import (
    OUTCOME_COMPACTED,
    OUTCOME_NO_CHANGE,
    OUTCOME_REFRESHED,
    SEGMENT_COLUMN,
    Counts,
    FileRef,
    Version,
    check_files,
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

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.superseded)


def diff_rows(source: SourceRows, table: pa.Table, pipeline: str) -> Diff:
    """What must change in `table` (its current rows: `_row_id`, `_content_hash`, `_segment`)
    for it to hold exactly `source`."""
    ids = table.column("_row_id").to_pylist()
    current = dict(zip(ids, zip(table.column("_content_hash").to_pylist(),
                                table.column(SEGMENT_COLUMN).to_pylist(), strict=True), strict=True))
    if len(current) != len(ids):
        raise ArtifactError(f"pipeline {pipeline!r}: the table holds a key more than once; run "
                            f"`jammi verify {pipeline} --repair` or rebuild with --full")
    diff = Diff()
    seen = set()
    for i, (key, digest) in enumerate(zip(source.keys, source.hashes, strict=True)):
        seen.add(key)
        old = current.get(key)
        if old is None:
            diff.added.append(i)
        elif old[0] != digest:
            diff.changed.append(i)
            diff.superseded.append((old[1], key))
        else:
            diff.unchanged += 1
    for key, (_, segment) in current.items():
        if key not in seen:
            diff.superseded.append((segment, key))
            diff.deleted += 1
    return diff


def held_vectors(tables_dir: Path, base: Version, current: pa.Table, wanted: set[str],
                 dimensions: int) -> dict[str, np.ndarray]:
    """Vectors the table already holds for the content hashes in `wanted` (a changed or added
    row whose text another row has, or had before this refresh): reused, not encoded again."""
    row_of: dict[str, str] = {}
    for row_id, digest in zip(current.column("_row_id").to_pylist(),
                              current.column("_content_hash").to_pylist(), strict=True):
        if digest in wanted:
            row_of.setdefault(digest, row_id)
    if not row_of:
        return {}
    found = read_current(tables_dir, base, ["vector", "_content_hash"], sorted(row_of.values()))
    vectors = vectors_of(found.column("vector"), dimensions)
    return dict(zip(found.column("_content_hash").to_pylist(), vectors, strict=True))


def _index_spec(rec: TableRecord) -> IndexSpec:
    return manifest_index_spec(rec.base_path)


def _next_number(catalog: Catalog, rec: TableRecord) -> int:
    return max(v.version for v in catalog.versions(rec.table_name)) + 1


def _write_segment(path: Path, rows: pa.Table) -> FileRef:
    tmp = tmp_path(path)
    pq.write_table(rows, tmp, compression="zstd")
    tmp.replace(path)
    return FileRef(path.name, rows.num_rows)


def _remove(tables_dir: Path, stem: str) -> None:
    for suffix in (*SUFFIXES, ".deletes.parquet"):
        (tables_dir / f"{stem}{suffix}").unlink(missing_ok=True)


def refresh_table(*, catalog: Catalog, rec: TableRecord, pipeline: str, pipe: PipelineSpec,
                  src: SourceSpec, source: str, frame_file: Path, encoder: Encoder,
                  progress: Progress | None = None, verify: Verify | None = None,
                  rows: SourceRows | None = None) -> EmbedStats:
    """Bring `rec` (the pipeline's active table, same generation) up to the validated frame
    (whose rows with text, keys and hashes the caller may pass in as `rows`)."""
    t0 = time.perf_counter()
    if rec.key_column != src.key:
        raise ArtifactError(f"pipeline {pipeline!r}: the key column changed from {rec.key_column!r} "
                            f"to {src.key!r} since {rec.table_name} was built; rebuild with "
                            f"`jammi materialize --select {pipeline} --full`")
    base = catalog.current_version(rec)
    check_files(rec.tables_dir, base, pipeline)
    rows = rows or source_rows(frame_file, src.key, pipe.embedded_columns, rec.model_id, doc_column(pipe))
    current = read_current(rec.tables_dir, base, ["_content_hash"])
    diff = diff_rows(rows, current, pipeline)
    size = 32 if pipe.batch_size == "auto" else pipe.batch_size  # a refresh encodes too few to calibrate
    stats = EmbedStats(rec.table_name, rec.parquet_path, rec.model_id, rec.dimensions or 0,
                       rows_in=len(rows.keys) + rows.skipped, rows_skipped=rows.skipped,
                       batch_size_start=size, generation=rec.generation, version=base.version)
    if diff.empty:
        stats.rows_embedded = base.rows
        stats.seconds = time.perf_counter() - t0
        stats.counts = Counts(unchanged=diff.unchanged, outcome=OUTCOME_NO_CHANGE,
                              seconds=round(stats.seconds, 3))
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
        known = held_vectors(rec.tables_dir, base, current, {rows.hashes[i] for i in todo}, stats.dimensions)
        doc_ids = None if rows.doc_ids is None else [rows.doc_ids[i] for i in todo]
        new_rows = encode_rows(encoder, source, [rows.keys[i] for i in todo], [rows.texts[i] for i in todo],
                               sizer, stats, doc_ids, known) if todo else table_schema(
            stats.dimensions, rows.doc_ids is not None).empty_table()
        segments = base.segments
        if new_rows.num_rows:
            segments = (*segments, _write_segment(tables_dir / f"{stem}.parquet", new_rows))
            build_index(tables_dir / stem, stats.dimensions, _index_spec(rec))
        deletes = base.deletes
        if diff.superseded:
            deletes = (*deletes, write_deletes(tables_dir / deletes_name(stem), diff.superseded))
        total = base.rows - len(diff.superseded) + new_rows.num_rows
        stats.rows_embedded = total
        stats.batch_size_end, stats.oom_events = sizer.size, sizer.oom_events
        stats.seconds = time.perf_counter() - t0
        stats.counts = Counts(len(diff.added), len(diff.changed), diff.deleted, diff.unchanged,
                              stats.rows_encoded, OUTCOME_REFRESHED, round(stats.seconds, 3))
        version = Version(rec.table_name, number, segments, deletes, total, stats.counts)
        stats.outcomes = verify(stats, version) if verify else []
        stats.blocked_by = [o.name for o in blocking_failures(stats.outcomes)]
        if stats.blocked_by:
            _remove(tables_dir, stem)
            return stats
        catalog.commit_version(pipeline, version, base)
    except BaseException:
        _remove(tables_dir, stem)
        raise
    stats.version = number
    if needs_compaction(version):
        stats.version = compact_table(catalog, catalog.table(rec.table_name), pipeline).version
    return stats


def needs_compaction(version: Version) -> bool:
    return (len(version.segments) > MAX_SEGMENTS
            or version.deleted_rows > MAX_DELETED_SHARE * max(1, version.rows))


def compact_table(catalog: Catalog, rec: TableRecord, pipeline: str) -> Version:
    """Rewrite the current rows into one Parquet segment with a fresh index, as a new version."""
    t0 = time.perf_counter()
    base = catalog.current_version(rec)
    check_files(rec.tables_dir, base, pipeline)
    rows = read_current(rec.tables_dir, base).drop_columns([SEGMENT_COLUMN])
    number = _next_number(catalog, rec)
    stem = version_stem(rec.table_name, number)
    try:
        segment = _write_segment(rec.tables_dir / f"{stem}.parquet", rows)
        build_index(rec.tables_dir / stem, rec.dimensions or 0, _index_spec(rec))
        counts = Counts(unchanged=rows.num_rows, outcome=OUTCOME_COMPACTED,
                        seconds=round(time.perf_counter() - t0, 3))
        version = Version(rec.table_name, number, (segment,), (), rows.num_rows, counts)
        catalog.commit_version(pipeline, version, base)
    except BaseException:
        _remove(rec.tables_dir, stem)
        raise
    return version


def version_files(tables_dir: Path, version: Version) -> set[Path]:
    """Every file a version reads: segments with their sidecars, and deletion files."""
    out = {tables_dir / d.file for d in version.deletes}
    for ref in version.segments:
        base = segment_base(tables_dir, ref)
        out |= {tables_dir / ref.file, base.with_name(base.name + ".usearch"),
                base.with_name(base.name + ".rowmap")}
    return out


def expire_versions(catalog: Catalog, rec: TableRecord, keep: int) -> list[Path]:
    """Forget all but the newest `keep` versions (and the current one) and delete the files
    only they used, and any version file no version names (left by a killed refresh)."""
    if keep < 1:
        raise ArtifactError("--keep must be at least 1")
    versions = catalog.versions(rec.table_name)
    kept = {v.version for v in versions[-keep:]} | {catalog.current_version(rec).version}
    live: set[Path] = set()
    for v in versions:
        if v.version in kept:
            live |= version_files(rec.tables_dir, v)
    catalog.drop_versions(rec.table_name, [v.version for v in versions if v.version not in kept])
    candidates = set(rec.tables_dir.glob(f"{rec.table_name}.v*")) | set(
        rec.tables_dir.glob(f".{rec.table_name}.v*.tmp"))  # what a killed refresh left
    if 0 not in kept:
        candidates |= {rec.tables_dir / f"{rec.table_name}{s}" for s in (".parquet", ".usearch", ".rowmap")}
    deleted = []
    for path in sorted(candidates - live):
        if path.exists():
            path.unlink()
            deleted.append(path)
    return deleted
