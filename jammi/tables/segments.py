"""Segment files: an embedding table's rows as Parquet files of a bounded number of rows.

Each segment gets an HNSW sidecar of its own, built one at a time, so building the index of a
large table (or compacting one) holds one segment's vectors, never the table's.

A segment is written to a local file first (the hidden temporary file beside a local target,
a spool file for an object-store URL) and put in place only when `close` is called, so no
segment a version could name is ever half-written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jammi import checksums, store
from jammi.storage import named_when_full, tmp_path
from jammi.store import Location
from jammi.tables.contract import ROW_GROUP_ROWS
from jammi.tables.versions import FileRef

SEGMENT_ROWS = 131072  # rows per segment file written by a build or a compaction


class SegmentWriter:
    """Rows written as segment files of `limit` rows each, at the paths (or object-store URLs)
    `names` yields in turn. Each file is written to a hidden temporary file (a spool file for a
    URL); `close` renames (uploads) them all, so a failed write leaves no file a version could
    name (`discard` removes the temporary files)."""

    def __init__(self, names: Iterator[Location], schema: pa.Schema, limit: int = SEGMENT_ROWS):
        self.names, self.schema, self.limit = names, schema, limit
        self.done: list[tuple[Location, int]] = []  # (final path or URL, rows)
        self.writer: pq.ParquetWriter | None = None
        self.path: Location | None = None
        self.rows = 0
        self.local: dict[Location, Path] = {}  # the local file each target is written to

    def _target(self) -> Location:
        """What an error names: the file being written (its path or URL)."""
        return self.path or Path(".")

    def write(self, table: pa.Table) -> None:
        with named_when_full(self._target, self.discard):
            self._write(table)

    def _write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self.writer is None:
                self._open()
            part = table.slice(0, self.limit - self.rows)
            self.writer.write_table(part, row_group_size=ROW_GROUP_ROWS)
            self.rows += part.num_rows
            table = table.slice(part.num_rows)
            if self.rows >= self.limit:
                self._finish()

    def _open(self) -> None:
        self.path = next(self.names)
        if store.is_url(self.path):
            self.local[self.path] = store.spool_path()  # the writer writes over the empty file
        else:
            self.local[self.path] = tmp_path(Path(self.path))
        self.writer = pq.ParquetWriter(self.local[self.path], self.schema, compression="zstd")

    def _finish(self) -> None:
        self.writer.close()
        self.done.append((self.path, self.rows))
        self.writer, self.rows = None, 0

    def close(self) -> tuple[FileRef, ...]:
        """Rename every finished file into place; no row at all still makes one empty segment."""
        with named_when_full(self._target, self.discard):
            return self._close()

    def _close(self) -> tuple[FileRef, ...]:
        if self.writer is not None or not self.done:
            if self.writer is None:
                self._open()
            self._finish()
        refs = []
        for path, rows in self.done:
            digest = store.put_file(self.local[path], path)
            checksums.written(path, digest)
            if store.is_url(path):
                self.local[path].unlink(missing_ok=True)
            refs.append(FileRef(store.name_of(path), rows, digest))
        return tuple(refs)

    def discard(self) -> None:
        """Remove what a failed write left: temporary files, and files renamed into place."""
        if self.writer is not None:
            writer, self.writer = self.writer, None
            self.done.append((self.path, self.rows))
            try:
                writer.close()
            except OSError:  # a full disk fails the close's flush too: the file is removed below
                pass
        for path, _ in self.done:
            self.local[path].unlink(missing_ok=True)
