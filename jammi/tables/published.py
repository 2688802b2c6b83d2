"""The published catalog, `jammi.duckdb`: what DuckDB clients, `jammi sql` and search read.

Jammi's own state lives in a private file (`state/catalog.duckdb`) that only Jammi's writers
open, one process at a time under a file lock, in short transactions. Before it lets go of
the lock, a writer writes a fresh `jammi.duckdb` beside the old one (copies of the state
tables, a view per asset output and per embedding table) and renames it into place. A
client holding the old file open keeps reading the old file, so no reader ever blocks a
writer, and views name files by absolute path under the artifact directory they were
published from: a moved project folder is noticed (`_published.root`) and republished.

Beside it, `.jammi.duckdb.stamp` holds a random token written (rename-atomic) after each
publish, so a reader that keeps what it read (the facade's search) learns cheaply whether it
must read again: `published_stamp` is the token plus the file's identity, taken *before* the
reader opens the file, so what it reads is never older than the stamp it keys it by.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

import duckdb

from jammi.storage import disk_full
from jammi.tables import duck

META_TABLE = "_published"
READ_ALIAS = "jammi"  # so `jammi.<view>` works as in any client that opens jammi.duckdb


def _sql_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def publish(con: duckdb.DuckDBPyConnection, target: Path, root: Path, tables: tuple[str, ...],
            make_views: Callable[[duckdb.DuckDBPyConnection], None], made_from: str = "") -> None:
    """Write `target` from the state database `con` is using: its `tables` copied, then
    `make_views(con)` run with the new file as the default database; then rename it into place.
    `made_from`: which state it was made from (a PostgreSQL catalog's schema and sequence), kept in
    `_published.state`; the local state's file has no such column."""
    state = con.execute("SELECT current_database()").fetchone()[0]
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    for stale in (tmp, tmp.with_name(tmp.name + ".wal")):
        stale.unlink(missing_ok=True)
    try:
        con.execute(f"ATTACH {_sql_literal(str(tmp))} AS _publishing")
        con.execute("BEGIN")  # one commit for the whole file: one sync of its log, not one per table and view
        for table in tables:
            con.execute(f'CREATE TABLE _publishing."{table}" AS SELECT * FROM "{state}".main."{table}"')
        con.execute(f"CREATE TABLE _publishing.{META_TABLE} AS SELECT ?::VARCHAR AS root,"
                    f" now()::TIMESTAMP AS published_at{', ?::VARCHAR AS state' if made_from else ''}",
                    [str(root), made_from] if made_from else [str(root)])
        con.execute("USE _publishing")
        try:
            make_views(con)
        finally:
            con.execute(f'USE "{state}"')
        con.execute("COMMIT")
        con.execute("CHECKPOINT _publishing")
        con.execute("DETACH _publishing")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:  # no transaction open (it committed, or never began)
            pass
        try:
            con.execute("DETACH _publishing")
        except duckdb.Error:  # detached already, or a full disk failed the detach's checkpoint too
            pass
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)
        full = disk_full(err, target)
        if full is not None:
            raise full from None
        raise
    _write_stamp(target)


def stamp_path(target: Path | str) -> str:
    """The stamp file beside `target` (a string: searches read it per call, without pathlib)."""
    head, name = os.path.split(os.fspath(target))
    return os.path.join(head, f".{name}.stamp")


def _write_stamp(target: Path) -> None:
    path = stamp_path(target)
    tmp = f"{path}.{os.getpid()}-{threading.get_ident()}.tmp"
    try:
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(16) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        full = disk_full(err, Path(path))
        if full is not None:
            raise full from None
        raise


def published_stamp(target: Path) -> tuple | None:
    """Something that differs after every publish of `target` (None: no published file): its
    stamp's token and the file's inode, size and times, so a file replaced by a publisher that
    writes no stamp is noticed too."""
    target = os.fspath(target)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return None
    try:
        with open(stamp_path(target), "rb") as fh:
            token = fh.read()
    except FileNotFoundError:
        token = b""
    return token, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def open_published(path: Path) -> duckdb.DuckDBPyConnection:
    """`path` attached read-only as `jammi` (and the default database) in a private in-memory
    instance (jammi.tables.duck): never DuckDB's per-path instance cache, which would hand back a
    replaced file. The caller closes it, or gives it back with `duck.give_back`."""
    con = duck.take()
    try:
        con.execute(f"ATTACH {_sql_literal(str(path))} AS {READ_ALIAS} (READ_ONLY)")
        con.execute(f"USE {READ_ALIAS}")
    except BaseException:
        con.close()
        raise
    return con


def published_root(con: duckdb.DuckDBPyConnection) -> str | None:
    """The artifact directory the open published file was written for (None: not a published
    file, e.g. a catalog from before the state file)."""
    found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
                        " AND table_name = ?", [META_TABLE]).fetchone()[0]
    return con.execute(f"SELECT root FROM {META_TABLE}").fetchone()[0] if found else None


def published_state(con: duckdb.DuckDBPyConnection) -> str | None:
    """The `state` a published file was made from (`publish`), None where it records none."""
    found = con.execute("SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database()"
                        " AND table_name = ? AND column_name = 'state'", [META_TABLE]).fetchone()[0]
    return con.execute(f"SELECT state FROM {META_TABLE}").fetchone()[0] if found else None
