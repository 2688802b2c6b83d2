"""The catalog's state in PostgreSQL (`catalog: {postgres: DSN, schema: NAME}`), for projects
written from several machines.

The tables are those of the local state file (jammi.tables.catalog), in one schema per project.
A write is one PostgreSQL transaction that first takes a transaction-scoped advisory lock of
the schema (`pg_advisory_xact_lock`: writers queue as they did on the local file lock) and ends
by advancing the schema's state sequence; in the same transaction it reads the state back, so
the caller can publish this node's `jammi.duckdb` from exactly what it committed. A reader
compares the sequence its published file was made from with the one in PostgreSQL (one query)
and republishes when it is behind. A pipeline's lock (`pipeline_lock`) is a session advisory
lock held on a connection of its own: a writer that dies, even by SIGKILL, drops its connection
and PostgreSQL releases the lock with it.

Every statement sent counts as one round trip (`round_trips`), a batch sent in pipeline mode
as one: the bench reports them per step."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from jammi import pg
from jammi.errors import ArtifactError
from jammi.pg import lock_key
from jammi.redact import dsn_display, dsn_secrets, redact

SEQUENCE_TABLE = "_jammi_state"
# a watched sequence (PostgresState.watched_seq) is also asked with a query at least this often,
# whatever the notifications say: the bound on staleness should a notification ever be missed
WATCH_RECHECK_S = 1.0


@dataclass
class RoundTrips:
    """Statements (or pipelined batches) this process sent to the catalog's PostgreSQL."""

    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.count += n


round_trips = RoundTrips()


def pg_schema_sql(duckdb_schema: str, added: dict[str, str]) -> list[str]:
    """The local state's CREATE TABLEs (jammi.tables.catalog._SCHEMA) in PostgreSQL's types,
    then the columns added since the first release."""
    ddl = re.sub(r"\bDOUBLE\b", "DOUBLE PRECISION", duckdb_schema)
    statements = [s.strip() for s in ddl.split(";") if s.strip()]
    statements += [f"ALTER TABLE embedding_tables ADD COLUMN IF NOT EXISTS {c} {t}" for c, t in added.items()]
    statements.append(f"CREATE TABLE IF NOT EXISTS {SEQUENCE_TABLE} (id INTEGER PRIMARY KEY,"
                      " seq BIGINT NOT NULL)")
    statements.append(f"INSERT INTO {SEQUENCE_TABLE} VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
    return statements


_PARAM = re.compile(r"\?")


def pg_params(sql: str) -> str:
    """DuckDB's `?` placeholders as psycopg's `%s` (a literal % doubled)."""
    return _PARAM.sub("%s", sql.replace("%", "%%"))


class PgConnection:
    """The part of a DuckDB connection the catalog's writers use (execute, executemany, fetch,
    description), over one psycopg connection inside its transaction."""

    is_postgres = True

    def __init__(self, conn: Any):
        self.conn = conn
        self._cur: Any = None
        self.committed: StateRows | None = None  # set once the write transaction committed

    def execute(self, sql: str, args: Sequence | None = None) -> PgConnection:
        round_trips.add()
        self._cur = self.conn.execute(pg_params(sql), list(args) if args else None)
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence]) -> PgConnection:
        round_trips.add()  # psycopg sends the rows pipelined: one round trip
        cur = self.conn.cursor()
        cur.executemany(pg_params(sql), [list(r) for r in rows])
        self._cur = cur
        return self

    @property
    def description(self) -> Any:
        return self._cur.description

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list:
        return self._cur.fetchall()


@dataclass(frozen=True)
class StateRows:
    """Every state table as (column names, rows), read in one snapshot at sequence `seq`."""

    seq: int
    tables: dict[str, tuple[list[str], list[tuple]]]


@dataclass
class _Watch:
    """A connection LISTENing on a schema's channel, and the newest sequence seen."""

    conn: Any
    pid: int
    seq: int = -1
    checked: float = 0.0
    ended: bool = False  # the server said it ends this connection (before its socket closes)

    @classmethod
    def listen(cls, conn: Any, channel: str) -> _Watch:
        from psycopg import sql

        round_trips.add()
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        watch = cls(conn, os.getpid())
        conn.add_notice_handler(watch._notice)
        return watch

    def _notice(self, diagnostic: Any) -> None:
        # an idle connection's FATAL (pg_terminate_backend, a server shutting down) comes as a
        # notice; the closed socket is seen only on a later read
        if diagnostic.severity_nonlocalized in ("FATAL", "PANIC"):
            self.ended = True

    def poll(self) -> int | None:
        """The newest sequence notified since the last poll (-1: none), reading only what the
        socket already holds; None: the connection broke."""
        import psycopg

        pgconn = self.conn.pgconn
        try:
            pgconn.consume_input()
        except psycopg.Error:
            return None
        newest = -1
        while (note := pgconn.notifies()) is not None:
            payload = note.extra.decode()
            newest = max(newest, int(payload) if payload.isdigit() else -1)
        if self.ended or pgconn.status != psycopg.pq.ConnStatus.OK:  # what it said was its last
            return None
        return newest


class PostgresState:
    """One project's catalog schema in PostgreSQL: connections (one per thread of a process,
    opened on first use), write transactions, the state sequence, pipeline locks."""

    def __init__(self, dsn: str, schema: str, ddl: list[str], tables: Sequence[str]):
        self.dsn, self.schema, self.ddl, self.tables = dsn, schema, ddl, tuple(tables)
        self.where = f"catalog PostgreSQL {dsn_display(dsn)} (schema {schema})"
        self.identity = f"{dsn_display(dsn)}/{schema}"
        self._local = threading.local()
        self._ready = False
        self._guard = threading.Lock()
        self._held: dict[str, list] = {}  # pipeline -> [thread id, depth, connection]
        self.channel = f"jammi_{lock_key(schema, 'state') & (2**63 - 1):x}"  # NOTIFY per commit
        self._watch: _Watch | None = None
        self._watch_guard = threading.Lock()

    # --- connections ------------------------------------------------------------------

    def error(self, what: str, err: BaseException) -> ArtifactError:
        lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
        first = next((ln for ln in lines if "failed:" in ln), lines[0] if lines else type(err).__name__)
        return ArtifactError(redact(f"{self.where}: {what}: {first}", dsn_secrets(self.dsn)))

    def _open(self, search_path: bool = True) -> Any:
        import psycopg
        from psycopg import sql

        try:
            conn = pg.connect(self.dsn)
        except psycopg.Error as err:
            raise self.error("cannot connect", err) from None
        if search_path:  # a lock's connection names no table
            round_trips.add()
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        return conn

    def _conn(self) -> Any:
        """This thread's connection (a fork's child opens its own)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and (self._local.pid != os.getpid() or conn.closed or conn.broken):
            conn = None
        if conn is None:
            conn = self._open()
            self._local.conn, self._local.pid, self._local.lock_wait_s = conn, os.getpid(), None
            self._ensure_schema(conn)
        return conn

    def _has_conn(self) -> bool:
        return getattr(self._local, "conn", None) is not None and self._local.pid == os.getpid()

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            with contextlib.suppress(Exception):
                conn.close()

    def _ensure_schema(self, conn: Any) -> None:
        if self._ready:
            return
        from psycopg import sql

        # one message, no parameters: PostgreSQL runs the statements of a simple query as one
        # implicit transaction, and the lock keeps two processes' CREATEs of a new schema apart
        create = sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
        script = [f"SELECT pg_advisory_xact_lock({int(lock_key(self.schema, 'schema'))})",
                  create.as_string(conn), *self.ddl]
        round_trips.add()
        conn.execute(";\n".join(script))
        self._ready = True

    @contextlib.contextmanager
    def _using(self, what: str) -> Iterator[Any]:
        """This thread's connection for one operation; a connection that broke (the server
        restarted, the backend was terminated) is dropped, so the next operation reconnects."""
        import psycopg

        conn = self._conn()
        try:
            yield conn
        except psycopg.OperationalError as err:
            self._drop()
            raise self.error(what, err) from None

    # --- state ------------------------------------------------------------------------

    def seq(self) -> int:
        """The state sequence: advanced by every committed write."""
        for attempt in (0, 1):  # a read survives one dropped connection
            had = self._has_conn()
            try:
                with self._using("reading the state sequence") as conn:
                    round_trips.add()
                    return int(conn.execute(f"SELECT seq FROM {SEQUENCE_TABLE} WHERE id = 1").fetchone()[0])
            except ArtifactError:
                if attempt or not had:  # a server that refused a new connection is not asked twice
                    raise
        raise AssertionError("unreachable")

    def watched_seq(self) -> int:
        """The state sequence, with no round trip while nothing was committed: a connection of
        this process LISTENs on the schema's channel, every write NOTIFYs its sequence in its
        transaction (delivered when it commits), and a call reads what arrived on that socket.
        A query is sent instead when the listening connection is new or broke, and at least
        every WATCH_RECHECK_S. For readers that keep what they read (search): a commit of
        another process is seen once its notification arrives (the round trip of a query
        would be no sooner)."""
        import psycopg

        with self._watch_guard:
            watch = self._watch
            now = time.monotonic()
            if watch is not None and watch.pid == os.getpid() and not watch.conn.broken:
                notified = watch.poll()
                if notified is not None:
                    watch.seq = max(watch.seq, notified)
                    if now - watch.checked < WATCH_RECHECK_S:
                        return watch.seq
                    watch.seq, watch.checked = max(watch.seq, self.seq()), now
                    return watch.seq
            if watch is not None and watch.pid == os.getpid():
                with contextlib.suppress(Exception):
                    watch.conn.close()
            self._watch = None
            try:
                watch = _Watch.listen(self._open(search_path=False), self.channel)
            except (ArtifactError, psycopg.Error):
                return self.seq()  # no listener: ask every time
            watch.seq, watch.checked = self.seq(), now  # after LISTEN: no commit falls between
            self._watch = watch
            return watch.seq

    def _saw(self, seq: int) -> None:
        """This process committed `seq`: its own watch need not wait for the notification."""
        with self._watch_guard:
            if self._watch is not None and self._watch.pid == os.getpid():
                self._watch.seq = max(self._watch.seq, seq)

    @contextlib.contextmanager
    def write(self, lock_wait_s: float) -> Iterator[PgConnection]:
        """A write transaction under the schema's writer lock; when the block ends without an
        error the sequence advances and the connection's `committed` holds the state as
        committed (for the caller to publish). Round trips: one for BEGIN and the lock, the
        block's statements, one for the sequence, the state read back and COMMIT."""
        import psycopg

        with self._using("writing the catalog") as conn:
            con = PgConnection(conn)
            if getattr(self._local, "lock_wait_s", None) != lock_wait_s:  # once per connection
                round_trips.add()
                conn.execute(f"SET lock_timeout = {int(lock_wait_s * 1000)}")
                self._local.lock_wait_s = lock_wait_s
            key = lock_key(self.schema, "catalog")
            try:
                round_trips.add()  # no parameters: both statements go in one message
                conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({int(key)})")
                yield con
                round_trips.add()
                held = self._lock_backends()
                with conn.pipeline() as batch:
                    if held:  # a lost pipeline lock aborts the transaction (1/0) before COMMIT
                        conn.execute("SELECT 1 / (count(DISTINCT pid) = %s)::int FROM pg_locks"
                                     " WHERE locktype = 'advisory' AND granted AND pid = ANY(%s)",
                                     [len(held), held])
                    seq = conn.execute(f"UPDATE {SEQUENCE_TABLE} SET seq = seq + 1 WHERE id = 1"
                                       " RETURNING seq")
                    conn.execute(f"SELECT pg_notify(%s, seq::text) FROM {SEQUENCE_TABLE} WHERE id = 1",
                                 [self.channel])
                    cursors = [conn.execute(f'SELECT * FROM "{t}"') for t in self.tables]
                    conn.execute("COMMIT")
                    batch.sync()
            except BaseException as err:
                if not conn.closed and not conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                if isinstance(err, psycopg.errors.LockNotAvailable):
                    raise ArtifactError(f"{self.where}: another Jammi process has held the writer lock "
                                        f"for over {lock_wait_s:.0f}s; is a writer stuck?") from None
                if isinstance(err, psycopg.errors.DivisionByZero):
                    raise ArtifactError(f"{self.where}: the connection holding this process's pipeline lock "
                                        "ended (the server restarted or the backend was terminated), so "
                                        "another writer may have started; nothing was committed: run it "
                                        "again") from None
                raise
            con.committed = self._state(int(seq.fetchone()[0]), cursors)
            self._saw(con.committed.seq)

    def _lock_backends(self) -> list[int]:
        """The server processes of the connections holding this thread's pipeline locks: a
        commit made under a lock checks, in its own transaction, that they still hold them."""
        me = threading.get_ident()
        with self._guard:
            return [held[2].info.backend_pid for held in self._held.values() if held[0] == me]

    def read(self) -> StateRows:
        """Every state table and the sequence, from one snapshot, in one round trip."""
        for attempt in (0, 1):
            had = self._has_conn()
            try:
                with self._using("reading the catalog") as conn:
                    round_trips.add()
                    try:
                        with conn.pipeline() as batch:
                            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                            seq = conn.execute(f"SELECT seq FROM {SEQUENCE_TABLE} WHERE id = 1")
                            cursors = [conn.execute(f'SELECT * FROM "{t}"') for t in self.tables]
                            conn.execute("COMMIT")
                            batch.sync()
                    except BaseException:
                        if not conn.closed and not conn.broken:
                            with contextlib.suppress(Exception):
                                conn.execute("ROLLBACK")
                        raise
                    return self._state(int(seq.fetchone()[0]), cursors)
            except ArtifactError:
                if attempt or not had:
                    raise
        raise AssertionError("unreachable")

    def _state(self, seq: int, cursors: list) -> StateRows:
        return StateRows(seq, {t: ([d.name for d in cur.description], cur.fetchall())
                               for t, cur in zip(self.tables, cursors, strict=True)})

    # --- pipeline locks ---------------------------------------------------------------

    @contextlib.contextmanager
    def pipeline_lock(self, pipeline: str, wait_s: float | None, max_wait_s: float,
                      busy: Callable[[], BaseException], waiting: Callable[[], None] | None,
                      timed_out: Callable[[], BaseException]) -> Iterator[None]:
        """A session advisory lock on a connection of its own, re-entered by the thread that
        holds it. `wait_s` None: try, then report `waiting` and wait up to `max_wait_s`
        (`timed_out`); else wait up to `wait_s` and raise `busy()`."""
        me = threading.get_ident()
        with self._guard:
            held = self._held.get(pipeline)
            if held is not None and held[0] == me:
                held[1] += 1
                mine = True
            else:
                mine = False
        if mine:
            try:
                yield
            finally:
                with self._guard:
                    self._held[pipeline][1] -= 1
            return
        conn = self._open(search_path=False)
        try:
            self._acquire(conn, lock_key(self.schema, "pipeline", pipeline), wait_s, max_wait_s, busy,
                          waiting, timed_out)
        except BaseException:
            conn.close()
            raise
        with self._guard:
            self._held[pipeline] = [me, 1, conn]
        try:
            yield
        finally:
            with self._guard:
                self._held.pop(pipeline, None)
            conn.close()  # the session ends: PostgreSQL releases the lock with it

    def _acquire(self, conn: Any, key: int, wait_s: float | None, max_wait_s: float,
                 busy: Callable[[], BaseException], waiting: Callable[[], None] | None,
                 timed_out: Callable[[], BaseException]) -> None:
        import psycopg

        try:
            round_trips.add()
            if conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:
                return
            if wait_s is not None and wait_s <= 0:
                raise busy()
            if wait_s is None and waiting:
                waiting()
            round_trips.add()
            conn.execute(f"SET lock_timeout = {int((max_wait_s if wait_s is None else wait_s) * 1000)}")
            round_trips.add()
            conn.execute("SELECT pg_advisory_lock(%s)", [key])
        except psycopg.errors.LockNotAvailable:
            raise (timed_out() if wait_s is None else busy()) from None
        except psycopg.OperationalError as err:
            raise self.error("taking the pipeline lock", err) from None
