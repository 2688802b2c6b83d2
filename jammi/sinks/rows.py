"""The Jammi side of a sink: which rows a store table must change to go from what it holds to a
table's current version, read from the table's own version files (segments minus deletions),
and the store rows themselves: key, content hash, vector and the selected source columns.

The rows a version holds are compared by key and content hash, so a compaction (same rows, new
files) changes nothing in the store, a rollback to an earlier version changes exactly what it
undoes, and any number of versions not yet applied are applied as the one change they add up to.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from jammi import store
from jammi.store import Location
from jammi.tables.catalog import frame_view_sql, quote_ident
from jammi.tables.versions import SEGMENT_COLUMN, Version, read_current

BATCH_ROWS = 8192  # store rows per batch handed to a store: bounded memory whatever the change
COLUMNS_HASH = "_columns_hash"
KEYS = pa.schema([("_row_id", pa.string()), ("_content_hash", pa.string())])


@dataclass(frozen=True)
class Change:
    """What a store table must do: upsert `upserts` (row ids, each with its segment in the
    table) and delete `deletes`."""

    upserts: pa.Table  # _row_id, _content_hash, _segment (of the target version)
    deletes: list[str]
    column_updates: int = 0  # of the upserts, rows whose text is unchanged but a column is not

    @property
    def empty(self) -> bool:
        return not (self.upserts.num_rows or self.deletes)


def version_keys(tables_dir: Path, version: Version) -> pa.Table:
    """The version's current rows as (_row_id, _content_hash, _segment)."""
    return read_current(tables_dir, version, ["_content_hash"]).combine_chunks()


def diff(target: pa.Table, held: pa.Table | None) -> Change:
    """The change that turns `held` (_row_id, _content_hash of what a store table holds; None:
    nothing) into `target` (version_keys of the version to reach)."""
    if held is None or held.num_rows == 0:
        return Change(target, [])
    held_ids = held.column("_row_id").combine_chunks()
    at = pc.index_in(target.column("_row_id"), value_set=held_ids)
    held_hash = held.column("_content_hash").combine_chunks().take(at)
    same = pc.fill_null(pc.equal(held_hash, target.column("_content_hash")), False)
    gone = pc.invert(pc.is_in(held_ids, value_set=target.column("_row_id")))
    return Change(target.filter(pc.invert(same)), held_ids.filter(gone).to_pylist())


def with_column_updates(change: Change, target: pa.Table, frame: pa.Table | None,
                        held: pa.Table | None) -> Change:
    """`change` plus the target rows whose selected columns differ between the frame (now) and
    the store table (`held` with its `_columns_hash`): a price that changed under an unchanged
    title reaches the store too."""
    if frame is None or held is None or held.num_rows == 0:
        return change
    ids = target.column("_row_id")
    frame_hash = frame.column(COLUMNS_HASH).take(pc.index_in(ids, value_set=frame.column("_row_id")))
    held_at = pc.index_in(ids, value_set=held.column("_row_id"))
    held_hash = held.column(COLUMNS_HASH).take(held_at)
    stale = pc.and_(pc.and_(pc.is_valid(frame_hash), pc.is_valid(held_at)),
                    pc.invert(pc.fill_null(pc.equal(frame_hash, held_hash), False)))
    stale = pc.and_(stale, pc.invert(pc.is_in(ids, value_set=change.upserts.column("_row_id"))))
    extra = target.filter(stale)
    if not extra.num_rows:
        return change
    return Change(pa.concat_tables([change.upserts, extra]), change.deletes, extra.num_rows)


def frame_columns(frame: Location, key: str, columns: list[str]) -> pa.Table | None:
    """The stored frame's (`_row_id`, each column, `_columns_hash`) for every row (a
    partitioned frame's folder: each key's row from its latest partition); None without columns.
    `_row_id` is the key as DuckDB's CAST(key AS VARCHAR) spells it, as search matches it."""
    if not columns:
        return None
    import duckdb

    picked = ", ".join(quote_ident(c) for c in columns)
    packed = ", ".join(f"{quote_ident(c)} := {quote_ident(c)}" for c in columns)
    sql = (f"SELECT CAST({quote_ident(key)} AS VARCHAR) AS _row_id, {picked}, "
           f"md5(CAST(to_json(struct_pack({packed})) AS VARCHAR)) AS {COLUMNS_HASH} "
           f"FROM ({frame_view_sql(frame)})")
    with duckdb.connect() as con:
        con.execute("SET threads = 1")
        store.register_duckdb(con, [frame])
        return con.sql(sql).to_arrow_table().combine_chunks()


def store_schema(dimensions: int, frame: pa.Table | None) -> pa.Schema:
    """The store row: key, content hash, columns hash, vector, then the selected columns."""
    fields = [pa.field("_row_id", pa.string(), nullable=False), pa.field("_content_hash", pa.string()),
              pa.field(COLUMNS_HASH, pa.string()), pa.field("vector", pa.list_(pa.float32(), dimensions))]
    if frame is not None:
        fields += [f for f in frame.schema if f.name not in ("_row_id", COLUMNS_HASH)]
    return pa.schema(fields)


def store_batches(tables_dir: Path, upserts: pa.Table, frame: pa.Table | None, schema: pa.Schema,
                  batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The store rows of `upserts`, read segment by segment (only the wanted rows' vectors),
    `batch_rows` at a time, with their columns from `frame`."""
    segments = upserts.column(SEGMENT_COLUMN)
    for segment in pc.unique(segments).to_pylist():
        ids = upserts.filter(pc.equal(segments, segment)).column("_row_id")
        pf = store.parquet_file(store.join(tables_dir, segment))
        for group in range(pf.num_row_groups):
            keyed = pf.read_row_group(group, columns=["_row_id"]).column("_row_id")
            hit = pc.is_in(keyed, value_set=ids)
            if not pc.any(hit).as_py():
                continue
            rows = pf.read_row_group(group, columns=["_row_id", "_content_hash", "vector"]).filter(hit)
            for batch in rows.to_batches(max_chunksize=batch_rows):
                yield _store_batch(pa.Table.from_batches([batch]), frame, schema)


def _store_batch(rows: pa.Table, frame: pa.Table | None, schema: pa.Schema) -> pa.RecordBatch:
    n = rows.num_rows
    columns = {"_row_id": rows.column("_row_id"), "_content_hash": rows.column("_content_hash"),
               COLUMNS_HASH: pa.nulls(n, pa.string()),
               "vector": rows.column("vector").cast(schema.field("vector").type)}
    if frame is not None:
        at = pc.index_in(rows.column("_row_id"), value_set=frame.column("_row_id"))
        for name in [f.name for f in schema][4:] + [COLUMNS_HASH]:
            columns[name] = frame.column(name).take(at)
    return pa.Table.from_pydict({f.name: columns[f.name] for f in schema}, schema=schema).combine_chunks(
    ).to_batches()[0] if n else pa.RecordBatch.from_pylist([], schema=schema)
