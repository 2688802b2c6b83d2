"""A source's validated frame held in memory for search: a hit list's columns are taken by
row position from a key → position map (no join over the frame), and the keys a filter allows
are computed once per filter. The frame is replaced, never rewritten in place, so its file
identity (inode, size, times) says when to read it again.

The frames returned match what DuckDB's join over the Parquet file returned (`.df()`): the
same columns, order and dtypes, a nullable pandas dtype for an int or bool column only when
the result holds a null, dates as datetime64[us]. Arrow types outside Jammi's column types
are converted by DuckDB itself. A search's rows are kept as Arrow (`attach_table`) until a
frame is asked for, so the command line prints them without importing pandas."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from jammi.query.sandbox import filter_keys
from jammi.tables.arrays import cast, float64s, int64s, strings, take
from jammi.tables.catalog import quote_ident

if TYPE_CHECKING:
    import pandas as pd

FILTERS_KEPT = 64  # the filters whose allowed keys one frame keeps, least recently used dropped
Hits = list[tuple[str, float]]


def file_identity(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _string_keys(table: pa.Table, key: str) -> list[str]:
    """The key column as DuckDB's CAST(key AS VARCHAR) spells it (how search and filters match
    `_row_id`): Arrow's cast for strings and integers, DuckDB's for anything else."""
    column = table.column(key)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or (
            pa.types.is_integer(column.type)):
        return cast(column, pa.string()).to_pylist()
    con = duckdb.connect()
    try:
        con.register("source_rows", table.select([key]))
        return [r[0] for r in con.execute(f"SELECT CAST({quote_ident(key)} AS VARCHAR) FROM source_rows")
                .fetchall()]
    finally:
        con.close()


def _nullable_dtype(arrow_type: pa.DataType):
    import pandas as pd

    if pa.types.is_boolean(arrow_type):
        return pd.BooleanDtype()
    return pd.api.types.pandas_dtype(f"{'UInt' if pa.types.is_unsigned_integer(arrow_type) else 'Int'}"
                                     f"{arrow_type.bit_width}")


def _plain(arrow_type: pa.DataType) -> bool:
    """Converted by Arrow exactly as DuckDB converts it."""
    return (pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type)
            or pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or pa.types.is_floating(arrow_type) or pa.types.is_date32(arrow_type)
            or (pa.types.is_timestamp(arrow_type) and arrow_type.tz is None
                and arrow_type.unit in ("us", "ns")))


def to_pandas_as_duckdb(table: pa.Table) -> pd.DataFrame:
    """`table` as DuckDB's `.df()` would give it (see the module docstring)."""
    if not all(_plain(f.type) for f in table.schema):
        con = duckdb.connect()
        try:
            return con.from_arrow(table).df()
        finally:
            con.close()
    for i, field in enumerate(table.schema):
        if pa.types.is_date32(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.timestamp("us")))
    frame = table.to_pandas()
    for i, field in enumerate(table.schema):
        t, column = field.type, table.column(i)
        if (pa.types.is_integer(t) or pa.types.is_boolean(t)) and column.null_count:
            nullable = _nullable_dtype(t)
            frame.isetitem(i, column.to_pandas(types_mapper=lambda _, d=nullable: d))
    return frame


class SourceRows:
    """The frame at `path` with `key` (a column) mapped to row positions; the other columns are
    read when a search first asks for them, from the same open file, so they stay the rows the
    key map was made from even after the file is replaced."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key
        self.identity = file_identity(self.path)
        self._file = pq.ParquetFile(self.path)
        self.names = self._file.schema_arrow.names
        self._columns: dict[str, pa.ChunkedArray] = {}
        self._lock = threading.Lock()
        self.position = {k: i for i, k in enumerate(_string_keys(self.columns([key]), key))}
        self._filters: OrderedDict[str, set[str]] = OrderedDict()

    def columns(self, names: list[str]) -> pa.Table:
        with self._lock:
            missing = [c for c in dict.fromkeys(names) if c not in self._columns]
            if missing:
                read = self._file.read(columns=missing)
                self._columns.update(zip(missing, read.columns, strict=True))
            return pa.Table.from_arrays([self._columns[c] for c in names], names=list(names))

    def current(self) -> bool:
        """Whether the file is still the one this read."""
        return file_identity(self.path) == self.identity

    def attach(self, columns: list[str], hits: Hits) -> pd.DataFrame:
        """`attach_table` as DuckDB's pandas frame (to_pandas_as_duckdb)."""
        return to_pandas_as_duckdb(self.attach_table(columns, hits))

    def attach_table(self, columns: list[str], hits: Hits) -> pa.Table:
        """`columns` of the hits' rows, then `_row_id` and `similarity`, in the hits' order; a
        hit whose key the frame no longer holds is left out."""
        found = [(p, r, s) for r, s in hits if (p := self.position.get(r)) is not None]
        rows = take(self.columns(columns), int64s([p for p, _, _ in found]))
        rows = rows.append_column("_row_id", strings([r for _, r, _ in found]))
        return rows.append_column("similarity", float64s([s for _, _, s in found]))

    def allowed(self, where: str) -> set[str]:
        """The keys of the rows for which the filter `where` holds (see
        jammi.query.sandbox.filter_keys), kept per filter."""
        with self._lock:
            keys = self._filters.get(where)
            if keys is not None:
                self._filters.move_to_end(where)
                return keys
        keys = filter_keys(self.columns(self.names), self.key, where)
        with self._lock:
            self._filters[where] = keys
            while len(self._filters) > FILTERS_KEPT:
                self._filters.popitem(last=False)
        return keys
