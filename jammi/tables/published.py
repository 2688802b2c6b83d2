"""The published catalog, `jammi.duckdb`: what DuckDB clients open; `jammi sql` and search read
Jammi's own copy of it.

Jammi's own state lives in a private file (`state/catalog.duckdb`) that only Jammi's writers
open, one process at a time under a file lock, in short transactions. Before it lets go of
the lock, a writer publishes: it writes a fresh file under a name of its own in
`state/published/` (copies of the state tables, a view per asset output and per embedding
table), names it in the stamp `.jammi.duckdb.stamp` (rename-atomic), then copies it to a
temporary file beside `jammi.duckdb` and renames that into place. Jammi's own readers open the
file the stamp names, never `jammi.duckdb`: a client may open `jammi.duckdb` for writing (a
`CREATE TABLE` of its own, a WAL left beside it), and nothing it writes reaches what Jammi
reads; its writes are not kept across publishes (the next publish replaces the file and
removes the WAL it left). A client holding the old file open keeps reading the old file, so
no reader ever blocks a writer. Views name files by absolute path under the artifact
directory they were published from: a moved project folder is noticed (`_published.root`) and
republished. A publish removes the private files older than the newest `KEEP_PRIVATE`; a
reader that finds its file gone reads the stamp again.

The stamp also tells a reader that keeps what it read (the facade's search) cheaply whether it
must read again: `published_stamp` is the stamp plus the published file's identity, taken
*before* the reader opens the file, so what it reads is never older than the stamp it keys it by.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from jammi.storage import named_when_full, write_atomic
from jammi.tables import duck

META_TABLE = "_published"
READ_ALIAS = "jammi"  # so `jammi.<view>` works as in any client that opens jammi.duckdb
PRIVATE_DIR = ("state", "published")  # under the artifact directory: the files Jammi's readers open
KEEP_PRIVATE = 2  # private files kept after a publish (a reader may still be about to open one)
OPEN_TRIES = 5
_WRITING = threading.Lock()  # the clients' copy and the stamp: temporary files named for the process


def _sql_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def private_dir(target: Path | str) -> Path:
    """The folder of the files Jammi's own readers open (`publish`)."""
    return Path(target).parent.joinpath(*PRIVATE_DIR)


def publish(con: duckdb.DuckDBPyConnection, target: Path, root: Path, tables: tuple[str, ...],
            make_views: Callable[[duckdb.DuckDBPyConnection], None], made_from: str = "") -> Path:
    """Write a fresh private file from the state database `con` is using: its `tables` copied,
    then `make_views(con)` run with the new file as the default database; name it in the stamp
    (Jammi's readers open it from then on), then copy it onto `target` for clients. Returns the
    private file. `made_from`: which state it was made from (a PostgreSQL catalog's schema and
    sequence), kept in `_published.state`; the local state's file has no such column."""
    folder = private_dir(target)
    with named_when_full(folder):
        folder.mkdir(parents=True, exist_ok=True)
    fresh = folder / f"{time.time_ns():020d}-{secrets.token_hex(4)}.duckdb"
    _write_private(con, fresh, root, tables, make_views, made_from)
    _write_stamp(target, fresh.name)
    _copy_for_clients(fresh, target)
    _collect(folder, fresh)
    return fresh


def _write_private(con: duckdb.DuckDBPyConnection, fresh: Path, root: Path, tables: tuple[str, ...],
                   make_views: Callable[[duckdb.DuckDBPyConnection], None], made_from: str) -> None:
    """`fresh` written through storage.write_atomic: its temporary file `.<name>.<pid>.tmp` (and
    DuckDB's `.wal` beside it) attached, filled in one transaction, checkpointed and synced."""
    state = con.execute("SELECT current_database()").fetchone()[0]

    def write(tmp: Path) -> None:
        wal = tmp.with_name(tmp.name + ".wal")
        for stale in (tmp, wal):
            stale.unlink(missing_ok=True)
        try:
            con.execute(f"ATTACH {_sql_literal(str(tmp))} AS _publishing")
            con.execute("BEGIN")  # one commit for the whole file: one log sync, not one per table and view
            for table in tables:
                con.execute(f'CREATE TABLE _publishing."{table}" AS SELECT * FROM "{state}".main."{table}"')
            con.execute(f"CREATE TABLE _publishing.{META_TABLE} AS SELECT ?::VARCHAR AS root,"
                        f" now()::TIMESTAMP AS published_at{', ?::VARCHAR AS state' if made_from else ''}",
                        [str(root), made_from] if made_from else [str(root)])
            con.execute("USE _publishing")
            try:
                make_views(con)
            except BaseException:  # a failed statement aborted the transaction: end it before
                con.execute("ROLLBACK")  # anything else runs, or its error would hide this one
                con.execute(f'USE "{state}"')
                raise
            con.execute(f'USE "{state}"')
            con.execute("COMMIT")
            con.execute("CHECKPOINT _publishing")
            con.execute("DETACH _publishing")
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:  # no transaction open (it committed, or never began)
                pass
            try:
                con.execute("DETACH _publishing")
            except duckdb.Error:  # detached already, or a full disk failed the detach's checkpoint too
                pass
            wal.unlink(missing_ok=True)  # write_atomic removes the file itself
            raise

    write_atomic(fresh, write)


def _copy_for_clients(fresh: Path, target: Path) -> None:
    """`fresh` copied onto `target` (storage.write_atomic: a temporary file renamed into place),
    and the WAL a client that wrote to the replaced file left beside it removed: it belongs to
    the old file, and a client opening the new one would fail on it (`WAL does not match
    database file`). One thread of a process at a time (the temporary file is named for the
    process)."""
    def write(tmp: Path) -> None:
        with open(fresh, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())

    with _WRITING:
        write_atomic(target, write)
    target.with_name(target.name + ".wal").unlink(missing_ok=True)


def _collect(folder: Path, newest: Path) -> None:
    """Remove the private files older than the newest `KEEP_PRIVATE` (never `newest`)."""
    names = sorted(p.name for p in folder.glob("*.duckdb") if p.name <= newest.name)
    for name in names[:-KEEP_PRIVATE]:
        for path in (folder / name, folder / f"{name}.wal"):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


def private_file(target: Path | str) -> Path | None:
    """The private file the last publish of `target` wrote, as its stamp names it (None: no
    stamp, or one written before private files, whose token names no file)."""
    try:
        with open(stamp_path(target), encoding="ascii", errors="replace") as fh:
            name = fh.read().strip()
    except FileNotFoundError:
        return None
    if not name.endswith(".duckdb") or "/" in name or name.startswith("."):
        return None
    return private_dir(target) / name


def newest_private(target: Path | str) -> Path | None:
    """The file the stamp names if it is there, else the newest private file (the stamp lost)."""
    named = private_file(target)
    if named is not None and named.exists():
        return named
    found = sorted(private_dir(target).glob("*.duckdb"), key=lambda p: p.name)
    return found[-1] if found else None


def open_private(target: Path | str) -> duckdb.DuckDBPyConnection | None:
    """The private file the stamp of `target` names, opened as `open_published` does; None where
    there is none (nothing published yet, or published before private files). A file removed by
    a publish between the stamp's read and the open is read again from the new stamp; a damaged
    one raises duckdb.Error."""
    for _ in range(OPEN_TRIES):
        path = private_file(target)
        if path is None:
            return None
        try:
            return open_published(path)
        except duckdb.Error:
            if path.exists():
                raise
    return None


def stamp_path(target: Path | str) -> str:
    """The stamp file beside `target` (a string: searches read it per call, without pathlib)."""
    head, name = os.path.split(os.fspath(target))
    return os.path.join(head, f".{name}.stamp")


def _write_stamp(target: Path, name: str) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(name + "\n")

    with _WRITING:
        write_atomic(Path(stamp_path(target)), write)


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
