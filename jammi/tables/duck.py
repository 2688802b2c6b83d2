"""In-memory DuckDB instances for the catalog, reused within a process.

`duckdb.connect()` builds a whole database instance (about 35 ms on a 2-core machine); attaching
a file to an existing one takes under 2 ms. A table build opens the catalog some twenty times
(reads of the published file, writes of the state), so a fresh instance each time was most of a
small run's fixed cost. An instance goes back to the pool only as new: every attached file
checkpointed (when written) and detached, no table or view left behind, no transaction open;
anything else (a guarded setting changed, say by the SQL sandbox) closes it. Never shared between two
users at once, and never across a fork.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import duckdb

MAX_IDLE = 4
_idle: list[tuple[int, duckdb.DuckDBPyConnection]] = []
_lock = threading.Lock()
_fresh: tuple | None = None  # the guarded settings of a new instance (the same for every one)
# settings whose change makes an instance unfit to lend again (what the SQL sandbox and the
# extractors set, and the usual suspects); reading all of duckdb_settings() costs 11 ms
GUARDED_SETTINGS = ("enable_external_access", "lock_configuration", "allowed_directories",
                    "allowed_paths", "disabled_filesystems", "threads", "memory_limit",
                    "file_search_path", "autoload_known_extensions", "autoinstall_known_extensions",
                    "TimeZone", "default_order", "preserve_insertion_order", "temp_directory")
_SETTINGS_SQL = "SELECT " + ", ".join(f"current_setting('{name}')" for name in GUARDED_SETTINGS)


def take() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB instance with nothing attached: an idle one of this process, or new."""
    pid = os.getpid()
    with _lock:
        while _idle:
            owner, con = _idle.pop()
            if owner == pid:  # one inherited through fork() belongs to the parent: left alone
                return con
    con = duckdb.connect()
    global _fresh
    if _fresh is None:
        _fresh = _settings(con)
    return con


def _settings(con: duckdb.DuckDBPyConnection) -> tuple:
    return con.execute(_SETTINGS_SQL).fetchone()


def give_back(con: duckdb.DuckDBPyConnection) -> None:
    """Return `con` (from `take`) to the pool if it can be made as new, else close it. Attached
    files are checkpointed and detached here, as closing the instance would have done."""
    if _reset(con):
        with _lock:
            if len(_idle) < MAX_IDLE:
                _idle.append((os.getpid(), con))
                return
    con.close()


def _reset(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        try:
            con.execute("ROLLBACK")  # what close() would do to a transaction left open
        except duckdb.TransactionException:
            pass  # none was open
        con.execute("USE memory")
        attached = con.execute("SELECT database_name, readonly FROM duckdb_databases() "
                               "WHERE NOT internal AND database_name <> 'memory'").fetchall()
        for name, readonly in attached:
            quoted = '"' + name.replace('"', '""') + '"'
            if not readonly:
                con.execute(f"CHECKPOINT {quoted}")
            con.execute(f"DETACH {quoted}")
        left = con.execute("SELECT (SELECT count(*) FROM duckdb_tables() WHERE NOT internal)"
                           " + (SELECT count(*) FROM duckdb_views() WHERE NOT internal)").fetchone()[0]
        return left == 0 and _settings(con) == _fresh  # e.g. a sandbox's SETs
    except duckdb.Error:
        return False


@contextlib.contextmanager
def lent(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Use `con` for a block: given back when the block ends normally, closed when it raises
    (a failed block may have left it in any state)."""
    try:
        yield con
    except BaseException:
        con.close()
        raise
    give_back(con)
