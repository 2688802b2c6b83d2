"""Similarity search over an embedding table: HNSW through the USearch sidecar, or exact
scoring over the Parquet vectors when asked to or when the sidecar is unusable. Both
paths return the same frame: the source's columns, `_row_id` and `similarity` (cosine).

`search` reads everything afresh on each call; `jammi.Jammi.search` (jammi.query.searcher)
keeps what it read between calls. What both share is in jammi.query.serving."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import duckdb

from jammi import store
from jammi.query.encoders import query_loader
from jammi.query.sandbox import filter_keys
from jammi.query.searcher import Searcher
from jammi.query.serving import (
    EncoderLoader,
    check_documents,
    check_k,
    exact_search,
    query_vector,
    served_columns,
    serving_table,
)
from jammi.spec.project import Project
from jammi.store import Location
from jammi.tables.catalog import Catalog, frame_view_sql, quote_ident
from jammi.tables.contract import manifest_index_spec
from jammi.tables.index import VersionIndex

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def _allowed_keys(frame: Location, key: str, where: str | None) -> set[str] | None:
    if where is None:
        return None
    return filter_keys(store.read_parquet(frame), key, where)


def search(
    project: Project,
    name: str,
    query: str | None = None,
    *,
    vector=None,
    row_key=None,
    k: int = 10,
    filter: str | None = None,
    select: list[str] | None = None,
    exact: bool = False,
    table: str | None = None,
    loader: EncoderLoader | None = None,
    documents: bool = False,
) -> pd.DataFrame:
    """Nearest rows of `name` (a source or pipeline) to a text, a vector or a row's vector;
    with `documents`, a chunked pipeline's documents ranked by their best chunk.

    Reads everything afresh on each call (catalog, index, the frame through a DuckDB join);
    `jammi.Jammi.search` (jammi.query.searcher.Searcher) keeps what it read between calls."""
    if documents:
        from jammi.query.documents import rank_documents

        check_documents(select)
        return rank_documents(lambda n: search(project, name, query, vector=vector, row_key=row_key, k=n,
                                               filter=filter, exact=exact, table=table, loader=loader),
                              k, name)
    check_k(k)
    catalog = Catalog(project.artifact_dir)
    rec, version = serving_table(project, catalog, name, table)
    key, cols, frame = served_columns(project, rec, select)
    if rec.rows_embedded == 0:
        return _attach_columns(frame, key, cols, [])
    q = query_vector(rec, version, query, vector, row_key,
                     lambda: (loader or query_loader(project, rec))(rec.model_id))
    allowed = _allowed_keys(frame, key, filter)  # keys of the frame's rows only
    exclude = {str(row_key)} if row_key is not None else set()
    index = None
    if not exact:
        index = VersionIndex(rec.tables_dir, version, rec.dimensions, manifest_index_spec(rec.base_path))
        for segment, problem in index.problems.items():
            log.warning("%s: %s; scoring it exactly", segment, problem)

    def nearest(among: set[str] | None) -> list[tuple[str, float]]:
        if index is None:
            return exact_search(rec, version, q.reshape(1, -1), k, among, exclude)[0]
        return index.search(q, k, among, exclude)

    hits = nearest(allowed)
    found = _attach_columns(frame, key, cols, hits)
    if len(found) < len(hits):
        # a refresh replaced the frame before its table committed: the index still holds rows the
        # frame has lost, so the search is asked again among the rows of one reading of the frame
        # (read once, so that another refresh in between cannot thin the answer again)
        rows = _read_frame(frame)
        found = _attach_columns(rows, key, cols, nearest(_frame_keys(rows, key)))
    return found


def _read_frame(frame: Location):
    def read():
        con = duckdb.connect()
        try:
            store.register_duckdb(con, [frame])
            return con.execute(frame_view_sql(frame)).to_arrow_table()
        finally:
            con.close()

    return _unless_replaced(frame, read)


FRAME_READ_ATTEMPTS = 3
T = TypeVar("T")


def _unless_replaced(frame, read: Callable[[], T]) -> T:
    """`read()` of a stored frame, made again when the frame was replaced while DuckDB read it.
    DuckDB opens a Parquet file once to bind the query and again to scan it, so a refresh's
    rename between the two pairs one file's footer with the other's bytes ("TProtocolException:
    Invalid data"). An error on a frame that did not change is the frame's and is raised; an
    object (replaced whole) is read once more without asking its state first, so a warm search
    sends the store nothing extra."""
    if not isinstance(frame, Path | str):  # rows already read
        return read()
    url = store.is_url(frame)
    for attempt in range(FRAME_READ_ATTEMPTS):
        before = None if url else store.state(frame)
        try:
            return read()
        except duckdb.Error:
            replaced = attempt == 0 if url else before is not None and store.state(frame) != before
            if not replaced or attempt == FRAME_READ_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _frame_keys(rows, key: str) -> set[str]:
    con = duckdb.connect()
    try:
        con.register("source_rows", rows)
        return {r[0] for r in con.execute(f"SELECT CAST({quote_ident(key)} AS VARCHAR) FROM source_rows")
                .fetchall()}
    finally:
        con.close()


def search_many(project: Project, name: str, queries, *, k: int = 10, filter: str | None = None,
                select: list[str] | None = None, exact: bool = False, table: str | None = None,
                loader: EncoderLoader | None = None) -> list[pd.DataFrame]:
    """`search` for each of `queries` (texts, or vectors as the rows of a 2-D array) in one
    encode call and one batched index search; see jammi.query.searcher.Searcher.search_many."""
    return Searcher(project, loader=loader).search_many(name, queries, k=k, filter=filter, select=select,
                                                        exact=exact, table=table)


def _attach_columns(frame, key: str, cols: list[str], hits: list[tuple[str, float]]) -> pd.DataFrame:
    """The hits joined with the frame's rows: `frame` is the file (or folder), or rows read from it."""
    import pandas as pd

    hit_frame = pd.DataFrame(hits, columns=["_row_id", "similarity"])

    def read() -> pd.DataFrame:
        con = duckdb.connect()
        try:
            con.register("hits", hit_frame)
            if isinstance(frame, Path | str):  # a stored frame's file or folder, local or a URL
                store.register_duckdb(con, [frame])
                rows = frame_view_sql(frame)
            else:
                con.register("source_rows", frame)
                rows = "SELECT * FROM source_rows"
            select = ", ".join(f"s.{quote_ident(c)}" for c in cols)
            return con.execute(
                f"SELECT {select}, h._row_id, h.similarity FROM hits h JOIN "
                f"({rows}) s "
                f"ON CAST(s.{quote_ident(key)} AS VARCHAR) = h._row_id ORDER BY h.similarity DESC"
            ).df()
        finally:
            con.close()

    return _unless_replaced(frame, read)
