"""DuckDB connections that reach only what they are given. A search filter runs over an
in-memory copy of the source's rows with no file access at all; `jammi sql` reads the catalog
and the artifact directory and writes nothing. Both take one read-only statement."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from jammi import store
from jammi.errors import JammiError, SearchError
from jammi.store import Location
from jammi.tables.catalog import STATUS_READY, Catalog, pipeline_view, quote_ident, quote_literal, source_view
from jammi.tables.versions import check_files

READING = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)


def one_reading_statement(sql: str, what: str, error: type[JammiError] = JammiError) -> None:
    """Refuse anything but exactly one SELECT (or EXPLAIN) statement."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as err:
        raise error(f"{what}: not valid SQL ({str(err).splitlines()[0]})") from None
    if len(statements) != 1:
        raise error(f"{what}: one statement only, {len(statements)} given")
    if statements[0].type not in READING:
        kind = statements[0].type.name
        raise error(f"{what}: only reading (SELECT) is allowed, not {kind}")


def lock_down(con: duckdb.DuckDBPyConnection, readable: list[Location] | None = None) -> None:
    """No file access but below `readable` (local folders, or object-store URL prefixes, read
    through the file system jammi.store.register_duckdb registers), and no way to change that
    on this connection."""
    if readable:
        local = [d for d in readable if not store.is_url(d)]
        spelled = {str(Path(d).resolve()) for d in local} | {str(Path(d).absolute()) for d in local} | {
            str(d) for d in readable if store.is_url(d)}
        dirs = ", ".join(quote_literal(d.rstrip("/") + "/") for d in sorted(spelled))
        con.execute(f"SET allowed_directories = [{dirs}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def filter_keys(rows: pa.Table, key: str, where: str) -> set[str]:
    """The keys of `rows` for which the boolean expression `where` holds."""
    con = duckdb.connect()
    try:
        con.register("source_rows", rows)
        lock_down(con)
        sql = f"SELECT CAST({quote_ident(key)} AS VARCHAR) FROM source_rows WHERE ({where})"
        one_reading_statement(sql, f"filter {where!r} must be one boolean expression over the "
                                   "source's columns", SearchError)
        return {r[0] for r in con.execute(sql).fetchall()}
    except duckdb.Error as err:
        raise SearchError(f"filter {where!r} failed: {str(err).splitlines()[0]}") from None
    finally:
        con.close()


def check_named_tables(catalog: Catalog, sql: str) -> None:
    """Before `sql` reads them: the files of each embedding table it names (by its own view, its
    pipeline's or its source's) match their recorded checksums (jammi.checksums: a stat per
    file once this node has hashed it), so a damaged file is named, with the fix, instead of
    served. A table the SQL does not name is not looked at."""
    text = sql.lower()
    active = catalog.active_names()
    for rec in catalog.tables(status=STATUS_READY):
        names = [rec.table_name]  # the views of its pipeline and source serve the active tables only
        if rec.table_name in active:
            names += [pipeline_view(rec.pipeline), source_view(rec.source)]
        if any(name.lower() in text for name in names):
            check_files(rec.tables_dir, catalog.current_version(rec), rec.pipeline)


@contextmanager
def reading_catalog(catalog: Catalog) -> Iterator[duckdb.DuckDBPyConnection]:
    """The published catalog, read-only, able to read files under the artifact directory and
    nothing else."""
    with catalog.connect(read_only=True) as con:
        lock_down(con, [catalog.artifact_dir, *([catalog.tables_url] if catalog.tables_url else [])])
        yield con
