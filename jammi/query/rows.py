"""A source's validated frame held in memory for search: a hit list's columns are taken by
row position from a key → position map (no join over the frame), and the keys a filter allows
are computed once per filter. The frame is replaced, never rewritten in place, so its file
identity (inode, size, times; an object's size and time: jammi.shared.identity) says when to
read it again. A frame under an object-store URL is read from this node's fetched copy.

The frames returned match what DuckDB's join over the Parquet file returned (`.df()`): the
same columns, order and dtypes, a nullable pandas dtype for an int or bool column only when
the result holds a null, dates as datetime64[us]. Arrow types outside Jammi's column types
are converted by DuckDB itself. The command line takes a search's rows as Arrow
(`attach_table`) and prints them without importing pandas; a pandas search (`attach`) takes
them from columns converted to numpy once per frame (FrameColumn): about 0.2 ms for ten rows
of nine columns here, against 0.9 ms to convert the hits' Arrow rows each time."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jammi import store
from jammi.query.sandbox import filter_keys
from jammi.shared import identity, is_folder
from jammi.store import Location
from jammi.tables.arrays import cast, float64s, int64s, strings, take
from jammi.tables.catalog import frame_view_sql, quote_ident

if TYPE_CHECKING:
    import pandas as pd

FILTERS_KEPT = 64  # the filters whose allowed keys one frame keeps, least recently used dropped
Hits = list[tuple[str, float]]


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


class FrameColumn:
    """One plain column (see `_plain`) converted once as DuckDB's `.df()` converts it, then
    taken by row position for each search (microseconds). An int or bool column that holds
    nulls keeps its values and its null mask, and is nullable (Int64, boolean...) only where a
    taken row is null, as DuckDB's frame of just those rows would be."""

    __slots__ = ("values", "mask")

    def __init__(self, column: pa.ChunkedArray):
        t = column.type
        if column.null_count and (pa.types.is_integer(t) or pa.types.is_boolean(t)):
            self.values = column.fill_null(False if pa.types.is_boolean(t) else 0).to_numpy()
            self.mask = column.is_null().to_numpy()
        else:
            self.values = to_pandas_as_duckdb(pa.table({"column": column})).iloc[:, 0].to_numpy()
            self.mask = None

    def take(self, positions: np.ndarray):
        values = self.values[positions]
        if self.mask is None:
            return values
        mask = self.mask[positions]
        if not mask.any():
            return values
        import pandas as pd

        if values.dtype == np.bool_:
            return pd.arrays.BooleanArray(values, mask)
        return pd.arrays.IntegerArray(values, mask)


class _Partitions:
    """A partitioned frame's folder read as one file (`schema_arrow`, `read`): every partition,
    a key in several keeping its latest partition's row."""

    def __init__(self, folder: Location):
        with duckdb.connect() as con:
            store.register_duckdb(con, [folder])
            self._table = con.execute(frame_view_sql(folder)).to_arrow_table()
        self.schema_arrow = self._table.schema

    def read(self, columns: list[str]) -> pa.Table:
        return self._table.select(columns)


class SourceRows:
    """The frame at `path` with `key` (a column) mapped to row positions; the other columns are
    read when a search first asks for them, from the same open file, so they stay the rows the
    key map was made from even after the file is replaced."""

    def __init__(self, path: Location, key: str):
        self.path, self.key = path if store.is_url(path) else Path(path), key
        self.identity = identity(self.path)
        self._file = (_Partitions(self.path) if is_folder(self.path)
                      else pq.ParquetFile(store.local_copy(self.path)))
        self.schema = self._file.schema_arrow  # a property that converts the schema on each call
        self.names = self.schema.names
        self._columns: dict[str, pa.ChunkedArray] = {}
        self._frame_columns: dict[str, FrameColumn] = {}
        self._convertible_columns: dict[tuple[str, ...], bool] = {}
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
        return identity(self.path) == self.identity

    def frame_columns(self, names: Sequence[str]) -> list[FrameColumn]:
        """The columns `names` converted for pandas (FrameColumn), each once."""
        with self._lock:
            missing = [c for c in dict.fromkeys(names) if c not in self._frame_columns]
        if missing:
            converted = {c: FrameColumn(column) for c, column in zip(missing, self.columns(missing).columns,
                                                                     strict=True)}
            with self._lock:
                self._frame_columns.update(converted)
        return [self._frame_columns[c] for c in names]

    def attach(self, columns: list[str], hits: Hits) -> pd.DataFrame:
        """`attach_table` as DuckDB's pandas frame (to_pandas_as_duckdb), built from the
        columns converted once (FrameColumn) when every column is plain and no name repeats."""
        if not self._convertible(tuple(columns)):
            return to_pandas_as_duckdb(self.attach_table(columns, hits))
        import pandas as pd

        found = self._found(hits)
        positions = np.fromiter((p for p, _, _ in found), dtype=np.int64, count=len(found))
        converted = self.frame_columns(columns)
        data = {c: column.take(positions) for c, column in zip(columns, converted, strict=True)}
        data["_row_id"] = np.array([r for _, r, _ in found], dtype=object)
        data["similarity"] = np.array([s for _, _, s in found], dtype=np.float64)
        return pd.DataFrame(data, copy=False)  # fresh arrays, each its own block: no consolidating copy

    def _convertible(self, columns: tuple[str, ...]) -> bool:
        """Whether `attach` can build from FrameColumns: every column plain, no name repeated."""
        known = self._convertible_columns.get(columns)
        if known is None:
            names = [*columns, "_row_id", "similarity"]
            known = len(set(names)) == len(names) and all(_plain(self.schema.field(c).type) for c in columns)
            self._convertible_columns[columns] = known
        return known

    def _found(self, hits: Hits) -> list[tuple[int, str, float]]:
        return [(p, r, s) for r, s in hits if (p := self.position.get(r)) is not None]

    def attach_table(self, columns: list[str], hits: Hits) -> pa.Table:
        """`columns` of the hits' rows, then `_row_id` and `similarity`, in the hits' order; a
        hit whose key the frame no longer holds is left out."""
        found = self._found(hits)
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
