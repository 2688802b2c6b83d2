"""What both search paths share: which table and version serve a name, the columns a search
returns, the query vector, and exact scoring over the Parquet vectors. jammi.query.search (a
fresh read per call) and jammi.query.searcher (what it read kept between calls) build on it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jammi.embedding.vectors import vectors_of
from jammi.errors import SearchError
from jammi.query import MAX_K
from jammi.shared import frame_path, stored_frame
from jammi.spec.project import Project
from jammi.store import Location
from jammi.tables.catalog import Catalog, TableRecord
from jammi.tables.versions import Version, read_current

EncoderLoader = Callable[[str], object]  # model id -> an encoder whose encode(texts) gives vectors


def resolve_table(project: Project, catalog: Catalog, name: str, table: str | None) -> TableRecord:
    """`name` is a pipeline or a source, served by its active table; `table` picks a specific
    ready table instead (an older one kept for rollback, say)."""
    return serving_table(project, catalog, name, table)[0]


def serving_table(project: Project, catalog: Catalog, name: str,
                  table: str | None) -> tuple[TableRecord, Version]:
    """The table `resolve_table` picks and the version of it that is served, read in one
    opening of the published catalog."""
    if table:
        found = catalog.serving(table_name=table)
        if found is None or found[0].status != "ready":
            state = "does not exist" if found is None else f"is {found[0].status}"
            raise SearchError(f"embedding table {table!r} {state}; `jammi status` lists tables")
        return found
    if name in project.pipelines:
        found = catalog.serving(pipeline=name)
    elif name in project.sources or project.entity_of(name):
        found = catalog.serving(source=project.embedding_source(name))
    else:
        known = sorted({*project.sources, *project.pipelines, *project.entities})
        raise SearchError(f"unknown source or pipeline {name!r} (known: {', '.join(known)})")
    if found is None:
        raise SearchError(f"{name!r} has no ready embedding table; run `jammi materialize` first")
    return found


def check_documents(select: list[str] | None) -> None:
    if select:
        raise SearchError("select does not apply to document search (it returns doc_id, similarity "
                          "and the best chunk's chunk_id, ordinal, start, end and text)")


def check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise SearchError(f"k must be between 1 and {MAX_K} (got {k})")


def served_columns(project: Project, rec: TableRecord,
                   select: list[str] | None) -> tuple[str, list[str], Location]:
    """The source's key, the columns a search returns (`select`, default all the source's) and
    the validated frame they come from."""
    src = project.frame_spec(rec.source)
    if src is None:
        raise SearchError(f"table {rec.table_name} belongs to source {rec.source!r}, no longer declared")
    cols = list(select) if select else list(src.columns)
    unknown = [c for c in cols if c not in src.columns]
    if unknown:
        raise SearchError(f"select: unknown column(s) {unknown} of source {rec.source!r}")
    frame_asset = project.frame_asset(rec.source)
    frame = stored_frame(project.artifact_dir, frame_asset)
    if frame is None:
        raise SearchError(f"{frame_asset} has not been materialized "
                          f"({frame_path(project.artifact_dir, frame_asset)} missing)")
    return src.key, cols, frame


def _table_vectors(rec: TableRecord, version: Version,
                   row_ids: set[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Row ids and vectors of the version's current rows (all, or those in `row_ids`)."""
    table = read_current(rec.tables_dir, version, ["vector"], None if row_ids is None else sorted(row_ids))
    return table.column("_row_id").to_pylist(), vectors_of(table.column("vector"), rec.dimensions)


def unit(q: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm == 0:
        raise SearchError("the query vector is zero or not finite")
    return (q / norm).astype(np.float32)


def query_vector(rec: TableRecord, version: Version, query: str | None, vector, row_key,
                 encoder: Callable[[], object]) -> np.ndarray:
    """The unit query vector from exactly one of a text (`encoder()` gives the model), a
    vector or a row key of the table."""
    given = sum(x is not None for x in (query, vector, row_key))
    if given != 1:
        raise SearchError("give exactly one of a query text, a vector or a row key")
    if query is not None:
        if not query.strip():
            raise SearchError("the query text is empty")
        q = encoder().encode([query])[0]
    elif vector is not None:
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if q.shape[0] != rec.dimensions:
            raise SearchError(f"query vector has {q.shape[0]} dimensions, table has {rec.dimensions}")
    else:
        ids, vecs = _table_vectors(rec, version, {str(row_key)})
        if len(ids) == 0:
            raise SearchError(f"row key {row_key!r} is not in table {rec.table_name}")
        q = vecs[0]
    return unit(q)


def exact_search(rec: TableRecord, version: Version, queries: np.ndarray, k: int,
                 allowed: set[str] | None, exclude: set[str]) -> list[list[tuple[str, float]]]:
    """Every current row scored against each query (rows of `queries`): the k best of each."""
    ids, vecs = _table_vectors(rec, version, allowed)
    if len(ids) == 0:
        return [[] for _ in range(len(queries))]
    out = []
    for scores in queries @ vecs.T:
        take = min(len(scores), k + len(exclude))
        top = np.argpartition(-scores, take - 1)[:take]
        top = top[np.argsort(-scores[top], kind="stable")]
        out.append([(ids[i], float(scores[i])) for i in top if ids[i] not in exclude][:k])
    return out
