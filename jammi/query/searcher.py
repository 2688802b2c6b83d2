"""Search that keeps what it read: the facade's (`jammi.Jammi`) searches go through one
Searcher, so a search after the first opens nothing.

Kept between searches: which table and version each name is served by, each served
version's index (its segments' USearch sidecars and row maps, taken over by the next version
of the table, since segments never change), each source's validated frame with a key →
row-position map and the keys each filter allowed, and the query encoder. Each search first
compares the published catalog's stamp (jammi.tables.published.published_stamp: a stat and a
small read) with the one it resolved names under; after any publish (a refresh, a stream's
micro-batch, a rollback) the names are resolved again in one opening of the catalog, and a
version that changed gets its index. A frame is read again when its file was replaced: a
local frame's file is looked at (a stat) on every search; a frame that is an object (under an
`s3://` artifact_dir) is looked at (one request to the store) when the catalog's stamp moved and
at least every OBJECT_RECHECK_S, since its writer commits to the catalog once it is uploaded.

`search_table` gives a search's rows as an Arrow table (what `jammi search` prints, without
pandas); `search` gives them as the pandas frame DuckDB would."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from jammi import store
from jammi.errors import SearchError
from jammi.query.encoders import query_loader
from jammi.query.rows import SourceRows
from jammi.query.serving import (
    EncoderLoader,
    check_documents,
    check_k,
    exact_search,
    query_vector,
    served_columns,
    serving_table,
    unit,
)
from jammi.shared import identity
from jammi.spec.project import Project
from jammi.store import Location
from jammi.tables.catalog import Catalog, TableRecord
from jammi.tables.contract import manifest_index_spec
from jammi.tables.frame_checksums import check_frame
from jammi.tables.index import VersionIndex
from jammi.tables.versions import Version

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
OBJECT_RECHECK_S = 1.0


class Searcher:
    """Searches over one project's embedding tables (see the module docstring)."""

    def __init__(self, project: Project, catalog: Catalog | None = None, loader: EncoderLoader | None = None):
        self.project = project
        self.catalog = catalog or Catalog(project.artifact_dir)
        self._loader = loader
        self._lock = threading.RLock()
        self._stamp: tuple | None = None
        self._served: dict[tuple[str, str | None], tuple[TableRecord, Version]] = {}
        self._selected: dict[tuple[str, tuple | None], tuple[str, list[str], Location]] = {}
        self._indexes: dict[str, VersionIndex] = {}
        self._rows: dict[str, SourceRows] = {}
        self._rows_checked: dict[str, tuple[tuple | None, float]] = {}  # source -> (stamp, when)
        self._encoders: dict[str, object] = {}

    def search(self, name: str, query: str | None = None, *, vector=None, row_key=None, k: int = 10,
               filter: str | None = None, select: list[str] | None = None, exact: bool = False,
               table: str | None = None, documents: bool = False) -> pd.DataFrame:
        """Nearest rows of `name` (a source or pipeline) to a text, a vector or a row's vector
        (with `documents`, a chunked pipeline's documents ranked by their best chunk); the same
        frame as jammi.query.search.search."""
        if documents:
            from jammi.query.documents import rank_documents

            check_documents(select)
            return rank_documents(lambda n: self.search(name, query, vector=vector, row_key=row_key, k=n,
                                                        filter=filter, exact=exact, table=table), k, name)
        rows, cols, hits = self._search_one(name, query, vector, row_key, k, filter, select, exact, table)
        return rows.attach(cols, hits)

    def search_table(self, name: str, query: str | None = None, *, vector=None, row_key=None, k: int = 10,
                     filter: str | None = None, select: list[str] | None = None, exact: bool = False,
                     table: str | None = None) -> pa.Table:
        """`search`'s rows (not documents) as an Arrow table: the source's columns as stored, then
        `_row_id` and `similarity`."""
        rows, cols, hits = self._search_one(name, query, vector, row_key, k, filter, select, exact, table)
        return rows.attach_table(cols, hits)

    def _search_one(self, name, query, vector, row_key, k, where, select, exact,
                    table) -> tuple[SourceRows, list[str], list[tuple[str, float]]]:
        check_k(k)
        rec, version = self._serving(name, table)
        key, cols, path = self._columns_of(rec, select)
        rows = self._source_rows(rec.source, path, key)
        if rec.rows_embedded == 0:
            return rows, cols, []
        q = query_vector(rec, version, query, vector, row_key, lambda: self._encoder(rec))
        exclude = {str(row_key)} if row_key is not None else set()
        return rows, cols, self._hits(rec, version, q.reshape(1, -1), k, rows, where, exact, exclude)[0]

    def search_many(self, name: str, queries: Sequence[str] | np.ndarray, *, k: int = 10,
                    filter: str | None = None, select: list[str] | None = None, exact: bool = False,
                    table: str | None = None) -> list[pd.DataFrame]:
        """`search` for each query (texts, or vectors as the rows of a 2-D array), in order: the
        texts encoded in one call, the index searched once for all of them."""
        check_k(k)
        rec, version = self._serving(name, table)
        key, cols, path = self._columns_of(rec, select)
        rows = self._source_rows(rec.source, path, key)
        matrix = self._query_matrix(rec, queries)
        if rec.rows_embedded == 0 or len(matrix) == 0:
            return [rows.attach(cols, []) for _ in range(len(matrix))]
        hits = self._hits(rec, version, matrix, k, rows, filter, exact, set())
        return [rows.attach(cols, h) for h in hits]

    def _query_matrix(self, rec: TableRecord, queries) -> np.ndarray:
        if isinstance(queries, str):
            raise SearchError("search_many takes a list of query texts (or vectors), not one text")
        if isinstance(queries, np.ndarray) or (len(queries) and not isinstance(queries[0], str)):
            matrix = np.asarray(queries, dtype=np.float32)
            if matrix.ndim != 2 or matrix.shape[1] != rec.dimensions:
                raise SearchError(f"query vectors must be an (n, {rec.dimensions}) array, "
                                  f"got shape {matrix.shape}")
        else:
            for i, text in enumerate(queries):
                if not isinstance(text, str) or not text.strip():
                    raise SearchError(f"query {i} is empty or not a text")
            if not queries:
                return np.zeros((0, rec.dimensions or 0), dtype=np.float32)
            matrix = np.asarray(self._encoder(rec).encode(list(queries)), dtype=np.float32)
        return np.stack([unit(q) for q in matrix]) if len(matrix) else matrix

    def _hits(self, rec: TableRecord, version: Version, queries: np.ndarray, k: int, rows: SourceRows,
              where: str | None, exact: bool, exclude: set[str]) -> list[list[tuple[str, float]]]:
        allowed = None if where is None else rows.allowed(where)  # keys of the frame's rows only
        found = self._nearest(rec, version, queries, k, allowed, exclude, exact)
        short = [i for i, hits in enumerate(found) if any(r not in rows.position for r, _ in hits)]
        if short:
            # a refresh replaced the frame before its table committed: the index still holds rows
            # the frame has lost, so those queries are asked again among the frame's rows only
            again = self._nearest(rec, version, queries[short], k, set(rows.position), exclude, exact)
            for i, hits in zip(short, again, strict=True):
                found[i] = hits
        return found

    def _nearest(self, rec: TableRecord, version: Version, queries: np.ndarray, k: int, allowed,
                 exclude: set[str], exact: bool) -> list[list[tuple[str, float]]]:
        if exact:
            return exact_search(rec, version, queries, k, allowed, exclude)
        return self._index(rec, version).search_many(queries, k, allowed, exclude)

    def _serving(self, name: str, table: str | None) -> tuple[TableRecord, Version]:
        stamp = self.catalog.stamp()  # before reading: what is read is never older than its stamp
        with self._lock:
            if stamp is None or stamp != self._stamp:
                self._served.clear()
                self._selected.clear()
                self._stamp = stamp
            found = self._served.get((name, table))
        if found is None:
            found = serving_table(self.project, self.catalog, name, table)
            with self._lock:
                if self._stamp == stamp and stamp is not None:
                    self._served[(name, table)] = found
        return found

    def _columns_of(self, rec: TableRecord, select: list[str] | None) -> tuple[str, list[str], Location]:
        """served_columns, kept until the next publish (a frame that goes missing in between is
        caught by _source_rows)."""
        handle = (rec.table_name, None if select is None else tuple(select))
        found = self._selected.get(handle)
        if found is None:
            found = self._selected[handle] = served_columns(self.project, rec, select)
        key, cols, path = found
        return key, list(cols), path

    def _index(self, rec: TableRecord, version: Version) -> VersionIndex:
        with self._lock:
            index = self._indexes.get(rec.table_name)
            if index is not None and index.version == version and not index.problems:
                return index
            spec = manifest_index_spec(rec.base_path)
            fresh = VersionIndex(rec.tables_dir, version, rec.dimensions, spec, reuse=index)
            for segment, problem in fresh.problems.items():
                log.warning("%s: %s; scoring it exactly", segment, problem)
            self._indexes[rec.table_name] = fresh
            return fresh

    def _source_rows(self, source: str, path, key: str) -> SourceRows:
        with self._lock:
            rows = self._rows.get(source)
            if rows is None or rows.path != path or rows.key != key or not self._still_current(source, rows):
                if identity(path) is None:  # neither the file nor a folder of partitions
                    name = store.name_of(path).removesuffix(".parquet")
                    raise SearchError(f"{name} has not been materialized ({path} missing)")
                check_frame(self.project.artifact_dir, self.project.frame_asset(source), path)
                rows = SourceRows(path, key)
                self._rows[source] = rows
                self._rows_checked[source] = (self._stamp, time.monotonic())
            return rows

    def _still_current(self, source: str, rows: SourceRows) -> bool:
        """Whether `rows` still holds the frame's file (see the module docstring: an object is
        asked only when the catalog moved or OBJECT_RECHECK_S passed)."""
        if not store.is_url(rows.path):
            return rows.current()
        now = time.monotonic()
        stamp, when = self._rows_checked.get(source, (None, -OBJECT_RECHECK_S))
        if stamp == self._stamp and stamp is not None and now - when < OBJECT_RECHECK_S:
            return True
        current = rows.current()
        self._rows_checked[source] = (self._stamp, now)
        return current

    def _encoder(self, rec: TableRecord):
        """The given loader's encoder, else the one that made the table's vectors, torch-free from
        its cached export when there is one (jammi.query.encoders)."""
        with self._lock:
            key = rec.model_id if self._loader else rec.table_name  # a table's backend never changes
            encoder = self._encoders.get(key)
            if encoder is None:
                loader = self._loader or query_loader(self.project, rec)
                encoder = self._encoders[key] = loader(rec.model_id)
            return encoder
