"""The catalog: Jammi's record of every embedding table and its status, kept in a private
DuckDB file (`state/catalog.duckdb`) that only Jammi's writers open, one process at a time
under a file lock, in short transactions. Every write publishes `jammi.duckdb` (see
jammi.tables.published): copies of these tables and a view per asset output and per
embedding table, so `SELECT ... FROM jammi.<name>` works from any DuckDB client opening it,
and a client holding it open never blocks a writer. Paths are stored relative to the
artifact directory, so a moved project folder keeps working.

Each pipeline has an ACTIVE pointer (`active_tables`): the table search and the
`<pipeline>_embeddings` / `<source>_latest_embeddings` views serve. A new table is built
beside the active one and the pointer is switched, in the same transaction that marks
it ready, only once it has passed its checks (blue/green); older ready tables stay for
rollback until removed. A catalog without a pointer for a pipeline serves its newest
ready table.

A table's versions (`table_versions`: segments and deletion files per version, see
jammi.tables.versions) and its `current_version` say which rows it holds; every refresh,
committed or not, leaves a row in `refresh_log`.

With `catalog: {postgres: ...}` in the project file the state lives in PostgreSQL instead
(jammi.tables.catalog_pg): the same tables and the same SQL, writers coordinated by
PostgreSQL's transactions and advisory locks; each node publishes its own jammi.duckdb from it
and republishes when the state sequence has moved past what its file was made from."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from jammi import keys, store
from jammi.embedding.texts import TEXT_SEPARATOR
from jammi.errors import ArtifactError
from jammi.shared import (
    FRAMES_DIR,
    is_folder,
    parquet_glob,
    partition_files,
    partition_key_of,
    recorded_frame,
)
from jammi.spec.catalog import PostgresCatalogSpec, configured_catalog, configured_tables
from jammi.storage import write_atomic
from jammi.store import Location
from jammi.tables import duck
from jammi.tables.catalog_pg import PostgresState, RoundTrips, pg_schema_sql
from jammi.tables.catalog_pg import round_trips as pg_round_trips
from jammi.tables.generation import DEFAULT_SCHEMA_VERSION, generation_fingerprint
from jammi.tables.published import (
    newest_private,
    open_private,
    publish,
    published_root,
    published_stamp,
    published_state,
)
from jammi.tables.versions import OUTCOME_ROLLED_BACK, Counts, FileRef, Version, view_sql

if TYPE_CHECKING:  # filelock is loaded by the writers, not by a search
    from filelock import FileLock

CATALOG_FILE = "jammi.duckdb"  # the published file clients open
STATE_DIR = "state"  # Jammi's private state: never open it from another client
STATE_FILE = "catalog.duckdb"
LOCK_FILE = "catalog.lock"
PUBLISH_LOCK_FILE = "publish.lock"  # one publisher of this node's jammi.duckdb at a time (PostgreSQL)
POSTGRES_MARKER = "catalog.postgres"  # this artifact_dir's state is in PostgreSQL: no local writes
TABLES_DIR = "jammi_db"
LOCK_WAIT_S = 120.0
PIPELINE_LOCK_WAIT_S = 6 * 3600.0
STATE_ALIAS = "jammi_state"

STATUS_BUILDING = "building"
STATUS_READY = "ready"
STATUS_FAILED = "failed"
STATUS_REMOVED = "removed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embedding_tables (
    table_name VARCHAR PRIMARY KEY,
    pipeline VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    model_id VARCHAR NOT NULL,
    text_columns VARCHAR NOT NULL,
    key_column VARCHAR NOT NULL,
    dimensions INTEGER,
    status VARCHAR NOT NULL,
    rows_embedded BIGINT DEFAULT 0,
    rows_skipped BIGINT DEFAULT 0,
    rows_failed BIGINT DEFAULT 0,
    rows_truncated BIGINT DEFAULT 0,
    source_schema VARCHAR,
    parquet_path VARCHAR NOT NULL,
    builder VARCHAR,
    error VARCHAR,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    source_schema_version VARCHAR,
    text_separator VARCHAR,
    generation VARCHAR
);
CREATE TABLE IF NOT EXISTS active_tables (
    pipeline VARCHAR PRIMARY KEY,
    table_name VARCHAR NOT NULL,
    previous_table VARCHAR,
    switched_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS quality_report (
    run_id VARCHAR,
    asset VARCHAR NOT NULL,
    partition VARCHAR,
    check_name VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    passed BOOLEAN NOT NULL,
    statistic DOUBLE,
    threshold DOUBLE,
    description VARCHAR,
    examples VARCHAR,
    checked_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS table_versions (
    table_name VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    segments VARCHAR NOT NULL,
    deletes VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    added BIGINT, changed BIGINT, deleted BIGINT, unchanged BIGINT, rows_encoded BIGINT,
    outcome VARCHAR, seconds DOUBLE,
    committed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (table_name, version)
);
CREATE TABLE IF NOT EXISTS refresh_log (
    pipeline VARCHAR NOT NULL,
    table_name VARCHAR NOT NULL,
    version INTEGER,
    added BIGINT, changed BIGINT, deleted BIGINT, unchanged BIGINT, rows_encoded BIGINT,
    outcome VARCHAR NOT NULL,
    seconds DOUBLE,
    committed_at TIMESTAMP NOT NULL,
    requests BIGINT, tokens_sent BIGINT, retries BIGINT, rate_limited BIGINT, rate_limit_waits BIGINT,
    rate_limit_wait_s DOUBLE, estimated_cost DOUBLE, tokens_avoided BIGINT, cost_avoided DOUBLE
);
CREATE TABLE IF NOT EXISTS asset_outputs (
    name VARCHAR PRIMARY KEY,
    path VARCHAR NOT NULL,
    rows BIGINT,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS fusion_labels (
    entity VARCHAR NOT NULL,
    left_source VARCHAR NOT NULL,
    left_id VARCHAR NOT NULL,
    right_source VARCHAR NOT NULL,
    right_id VARCHAR NOT NULL,
    is_match BOOLEAN NOT NULL,
    labelled_by VARCHAR NOT NULL,
    labelled_at TIMESTAMP NOT NULL,
    origin VARCHAR,
    PRIMARY KEY (entity, left_source, left_id, right_source, right_id)
);
CREATE TABLE IF NOT EXISTS frame_checksums (
    path VARCHAR PRIMARY KEY,
    digest VARCHAR NOT NULL,
    recorded_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS sidecar_checksums (
    table_name VARCHAR NOT NULL,
    file VARCHAR NOT NULL,
    digest VARCHAR NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    PRIMARY KEY (table_name, file)
);
"""
# columns added after the first release: catalogs written before them gain them on open
_ADDED_COLUMNS = {"source_schema_version": "VARCHAR", "text_separator": "VARCHAR", "generation": "VARCHAR",
                  "current_version": "INTEGER"}
STATE_TABLES = ("embedding_tables", "active_tables", "quality_report", "table_versions", "refresh_log",
                "asset_outputs", "fusion_labels", "sidecar_checksums", "frame_checksums")
_SIDECAR_COLUMNS = ("table_name", "file", "digest", "recorded_at")
LABEL_COLUMNS = ("entity", "left_source", "left_id", "right_source", "right_id", "is_match", "labelled_by",
                 "labelled_at", "origin")
_VERSION_COLUMNS = ("table_name", "version", "segments", "deletes", "rows", "added", "changed", "deleted",
                    "unchanged", "rows_encoded", "outcome", "seconds", "committed_at")
_LOG_COLUMNS = ("added", "changed", "deleted", "unchanged", "rows_encoded", "outcome", "seconds")
# a provider pipeline's run in refresh_log (jammi.embedding.providers.usage.USAGE_COLUMNS); NULL in process
_USAGE_COLUMNS = {"requests": "BIGINT", "tokens_sent": "BIGINT", "retries": "BIGINT",
                  "rate_limited": "BIGINT", "rate_limit_waits": "BIGINT", "rate_limit_wait_s": "DOUBLE",
                  "estimated_cost": "DOUBLE", "tokens_avoided": "BIGINT", "cost_avoided": "DOUBLE"}


def quote_ident(name: str) -> str:
    """Quote a user-supplied table or column name as a DuckDB identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def pipeline_view(pipeline: str) -> str:
    """The view over a pipeline's active table (same name as its asset)."""
    return keys.embeddings(pipeline)


def source_view(source: str) -> str:
    """The view over the active table of a source: of its pipelines' active tables, the newest."""
    return keys.latest_embeddings_view(source)


def _serving_sql(with_pointer: bool, portable: bool = False) -> str:
    """One row per pipeline: the ready table its pointer names, else its newest ready table.
    `portable`: SQL PostgreSQL runs too (a `_rank` column left in)."""
    pointed = "(a.table_name IS NOT NULL) DESC, " if with_pointer else ""
    join = (" LEFT JOIN active_tables a ON a.pipeline = e.pipeline AND a.table_name = e.table_name"
            if with_pointer else "")
    return (
        f"SELECT *{'' if portable else ' EXCLUDE (_rank)'} FROM (SELECT e.*, row_number() OVER"
        f" (PARTITION BY e.pipeline ORDER BY {pointed}e.created_at DESC, e.table_name DESC) AS _rank"
        f" FROM embedding_tables e{join} WHERE e.status = '{STATUS_READY}') r WHERE _rank = 1"
    )


def _where(**equal: str | None) -> tuple[str, list]:
    """` WHERE a = ? AND b = ?` over the given filters that are not None, and their values."""
    given = {column: value for column, value in equal.items() if value is not None}
    clause = " AND ".join(f"{column} = ?" for column in given)
    return (f" WHERE {clause}" if clause else ""), list(given.values())


def _rows(cur: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    if getattr(con, "is_postgres", False):  # its schema is made whole on first use
        return name in STATE_TABLES
    return bool(con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main'"
        " AND database_name = current_database()", [name]
    ).fetchone()[0])


class PipelineBusy(ArtifactError):
    """Another process holds the pipeline's lock (a caller that would rather retry later)."""


_LOCKS: dict[str, FileLock] = {}
_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path, timeout: float) -> FileLock:
    """One lock object per lock file in a process, so nested use re-enters instead of waiting
    on itself; between processes it is an flock, released by the kernel when a holder dies."""
    from filelock import FileLock

    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path), FileLock(str(path), timeout=timeout))


def _attach(con: duckdb.DuckDBPyConnection, path: Path, alias: str, read_only: bool = False) -> None:
    """ATTACH with a short wait while another process (a client that opened Jammi's private
    state, say) holds DuckDB's own lock on the file."""
    deadline = time.monotonic() + 10.0
    mode = " (READ_ONLY)" if read_only else ""
    while True:
        try:
            con.execute(f"ATTACH {quote_literal(str(path))} AS {alias}{mode}")
            return
        except duckdb.IOException as err:
            if "lock" not in str(err).lower():
                raise  # not a wait: the caller says what it means (a damaged state, say)
            if time.monotonic() > deadline:
                raise ArtifactError(f"catalog state {path} cannot be opened: {str(err).splitlines()[0]}"
                                    f" (only Jammi opens this file; open {CATALOG_FILE} instead)") from None
            time.sleep(0.2)


# what DuckDB says of a file whose bytes are not what it wrote (flipped, cut short, not DuckDB's)
_DAMAGE_MARKS = ("corrupt", "checksum", "could not read enough bytes", "not a valid duckdb",
                 "failed to deserialize", "serialization", "replaying wal", "invalid block",
                 "unexpected end", "wal does not match", "tprotocolexception", "thrift", "no magic bytes",
                 "don't know what type")


def damaged(err: BaseException) -> bool:
    """Whether a DuckDB error says the file it read is damaged."""
    text = str(err).lower()
    return isinstance(err, duckdb.Error) and (
        isinstance(err, duckdb.SerializationException | duckdb.InternalException)
        or any(mark in text for mark in _DAMAGE_MARKS))


class StateDamaged(ArtifactError):
    """The private state file cannot be read as written: `jammi recover` rebuilds it."""

    def __init__(self, path: Path, err: BaseException):
        self.path = path
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        super().__init__(f"catalog state {path} is damaged ({detail}); run `jammi recover` to rebuild it "
                         f"from the published {CATALOG_FILE} (the damaged file is kept beside it)")


def _table_path(root: Location, stored: str) -> Location:
    """A stored table path under `root` (a local folder or an object-store URL): relative ones
    as they are; absolute ones (catalogs written before relative paths, or a project that
    moved) by their file name, since a table's files only ever live in the tables folder."""
    if store.is_url(root):
        relative = stored if not store.is_url(stored) else f"{TABLES_DIR}/{store.name_of(stored)}"
        return store.join(root, relative)
    path = Path(stored)
    return Path(root) / path if not path.is_absolute() else Path(root) / TABLES_DIR / path.name


def _relative(root: Location, path: Location) -> str:
    if store.is_url(root):
        return str(path).removeprefix(str(root).rstrip("/") + "/")
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


@contextlib.contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    if getattr(con, "is_postgres", False):  # every PostgreSQL write is one transaction already
        yield
        return
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _upsert(con: duckdb.DuckDBPyConnection, table: str, columns: tuple[str, ...],
            keys: tuple[str, ...]) -> str:
    """INSERT that replaces the row with the same `keys`, in the dialect of `con`."""
    marks = ", ".join("?" * len(columns))
    if not getattr(con, "is_postgres", False):
        return f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({marks})"
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in keys)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}")


_POSTGRES_STATES: dict[tuple[str, str], PostgresState] = {}
_POSTGRES_GUARD = threading.Lock()


def _postgres_state(spec: PostgresCatalogSpec) -> PostgresState:
    """One PostgresState per DSN and schema in a process (its connections and locks)."""
    key = (spec.postgres, spec.schema_name)
    with _POSTGRES_GUARD:
        found = _POSTGRES_STATES.get(key)
        if found is None:
            found = _POSTGRES_STATES[key] = PostgresState(
                spec.postgres, spec.schema_name, pg_schema_sql(_SCHEMA, _ADDED_COLUMNS), STATE_TABLES)
        return found


# the local backend's round trips: opens of the published file or of the state
local_round_trips = RoundTrips()


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def process_start(pid: int) -> tuple[str, str] | None:
    """(state, start) of a Linux process from /proc/<pid>/stat, its start in clock ticks since
    boot (field 22), None where there is no such file. The tick count never changes for the
    process's life; a wall-clock start time (psutil's create_time) is derived from the boot
    time, which the kernel reports in whole seconds from the adjustable clock and can move by
    one second while the process runs."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()  # after the command name: field 3 onwards
    return fields[0].decode(), fields[19].decode()


def this_builder() -> str:
    """host:pid:start, so a recycled pid is not mistaken for a live builder: the start as
    `t<clock ticks>` where /proc has it (process_start), else the wall-clock start time."""
    found = process_start(os.getpid())
    if found is not None:
        return f"{socket.gethostname()}:{os.getpid()}:t{found[1]}"
    import psutil

    started = psutil.Process(os.getpid()).create_time()
    return f"{socket.gethostname()}:{os.getpid()}:{started:.3f}"


@dataclass(frozen=True)
class TableRecord:
    table_name: str
    pipeline: str
    source: str
    model_id: str
    text_columns: list[str]
    key_column: str
    dimensions: int | None
    status: str
    rows_embedded: int
    rows_skipped: int
    rows_failed: int
    rows_truncated: int
    source_schema: dict
    parquet_path: Location  # a local path, or a URL when the project's tables live in an object store
    builder: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    source_schema_version: str = DEFAULT_SCHEMA_VERSION
    text_separator: str = TEXT_SEPARATOR
    generation: str = ""
    current_version: int | None = None  # None: a table from before versions (its Parquet file)

    @property
    def base_path(self) -> Location:
        if store.is_url(self.parquet_path):
            return str(self.parquet_path).removesuffix(".parquet")
        return Path(self.parquet_path).with_suffix("")

    @property
    def tables_dir(self) -> Location:
        return store.parent_of(self.parquet_path)


@dataclass(frozen=True)
class Pointer:
    """A pipeline's row in `active_tables`."""

    pipeline: str
    table_name: str
    previous_table: str | None
    switched_at: datetime


@dataclass(frozen=True)
class Snapshot:
    """A pipeline's serving state read at once (`Catalog.snapshot`)."""

    active: TableRecord | None  # the table search serves
    version: Version | None  # the version of it served
    pointer: Pointer | None
    frame_digests: dict = dataclasses.field(default_factory=dict)  # of the frames asked for


class Catalog:
    """Writers: short transactions on the private state, one process at a time, each ending by
    publishing jammi.duckdb. Readers: the published file, which nothing holds locked."""

    def __init__(self, artifact_dir: Path, postgres: PostgresCatalogSpec | None = None):
        """`postgres`: the state in PostgreSQL; default: what the loaded project declared for
        `artifact_dir` (jammi.spec.catalog), else the local state file."""
        self.artifact_dir = Path(artifact_dir)
        self.path = self.artifact_dir / CATALOG_FILE
        self.state_path = self.artifact_dir / STATE_DIR / STATE_FILE
        spec = postgres or configured_catalog(self.artifact_dir)
        self.pg = _postgres_state(spec) if spec is not None else None
        # where the tables live: under the artifact directory, or the project's object-store URL
        self.tables_url = configured_tables(self.artifact_dir)
        if self.tables_url is not None and self.pg is None:
            raise ArtifactError(f"artifact_dir {self.tables_url!r} is an object-store URL, which needs "
                                "`catalog: {postgres: ...}` in the project file")
        self.data_root: Location = self.tables_url or self.root
        self.tables_dir: Location = store.join(self.data_root, TABLES_DIR)

    @property
    def backend(self) -> str:
        """Where the state lives, for people: `local` or `postgres host:port/db (schema s)`."""
        return "local" if self.pg is None else f"postgres {self.pg.identity.rsplit('/', 1)[0]} " \
            f"(schema {self.pg.schema})"

    @property
    def round_trips(self) -> int:
        """Round trips this process made to its catalog backend so far (PostgreSQL: statements
        and pipelined batches sent; local: opens of the state or published file): read it
        before and after a step to count the step's."""
        return (pg_round_trips if self.pg is not None else local_round_trips).count

    @property
    def root(self) -> Path:
        return self.artifact_dir.resolve()

    def exists(self) -> bool:
        if self.pg is not None:
            return self.path.exists() or self.pg.seq() > 0
        return self.path.exists() or self.state_path.exists()

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """`read_only`: the published file as it is now. Else the state, under the writer lock,
        republished when the block ends without an error."""
        if self.pg is None:
            local_round_trips.add()
        if read_only and self.exists():
            con = self._open_published()
            if self.tables_url is not None:  # its views read the tables' URLs
                store.register_duckdb(con, [self.tables_url])
            with duck.lent(con):
                yield con
            return
        if self.pg is not None:
            with self._writing_postgres() as con:
                yield con
            return
        with self._writing() as con:
            yield con
            publish(con, self.path, self.root, self._present_tables(con), self._make_views)

    @contextlib.contextmanager
    def pipeline_lock(self, pipeline: str, waiting: Callable[[str], None] | None = None,
                      wait_s: float | None = None) -> Iterator[None]:
        """One writer of a pipeline's tables at a time across processes (partitions of one
        pipeline embedding at once, a refresh beside `jammi tables compact`, a batch run beside
        the stream worker): the second waits for the first, then works from what it committed.
        Released by the kernel if the holder dies. With `wait_s`, PipelineBusy after that long.
        With the state in PostgreSQL: a session advisory lock, released by PostgreSQL when the
        holder's connection ends."""
        pg = self.pg
        if pg is not None:
            with pg.pipeline_lock(
                pipeline, wait_s, PIPELINE_LOCK_WAIT_S,
                busy=lambda: PipelineBusy(f"pipeline {pipeline!r}: another process is writing its table "
                                          f"({pg.where})"),
                waiting=(lambda: waiting(f"pipeline {pipeline!r}: another process is writing its table; "
                                         "waiting for it")) if waiting else None,
                timed_out=lambda: ArtifactError(f"pipeline {pipeline!r}: its table has been locked by another"
                                                f" process for {PIPELINE_LOCK_WAIT_S / 3600:.0f} h "
                                                f"({pg.where})")):
                yield
            return
        from filelock import Timeout

        path = self.artifact_dir / STATE_DIR / f"{pipeline}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _file_lock(path, PIPELINE_LOCK_WAIT_S)
        try:
            lock.acquire(timeout=0 if wait_s is None else wait_s)
        except Timeout:
            if wait_s is not None:
                raise PipelineBusy(f"pipeline {pipeline!r}: another process is writing its table "
                                   f"({path})") from None
            if waiting:
                waiting(f"pipeline {pipeline!r}: another process is writing its table; waiting for it")
            try:
                lock.acquire()
            except Timeout:
                raise ArtifactError(f"pipeline {pipeline!r}: its table has been locked by another "
                                    f"process for {PIPELINE_LOCK_WAIT_S / 3600:.0f} h ({path})") from None
        try:
            yield
        finally:
            lock.release()

    def publish(self) -> None:
        """Write jammi.duckdb afresh from the state (after a crash, a move, or a lost file)."""
        if self.pg is not None:
            self._publish_state(self.pg.read(), force=True)
            return
        with self.connect():
            pass

    def ensure_published(self) -> None:
        """Publish again when the state changed after the published file was written: a writer
        killed between its state commit and its publish leaves readers (and every refresh, whose
        base version they read) one commit behind until something writes again. With the state
        in PostgreSQL: nothing to do here, since every read compares the state sequence its
        published file was made from with PostgreSQL's and publishes again when behind."""
        if self.pg is not None:
            return
        try:
            state = self.state_path.stat().st_mtime_ns
        except OSError:
            return
        try:
            behind = self.path.stat().st_mtime_ns < state
        except OSError:
            behind = True
        if behind:
            try:
                self.publish()
            except StateDamaged as err:  # readers go on with the published file; writers name it
                logging.getLogger(__name__).warning("%s", err)

    def _open_published(self) -> duckdb.DuckDBPyConnection:
        if self.pg is not None:
            return self._open_published_postgres()
        try:
            con = open_private(self.path)
        except duckdb.Error:  # damaged: write a new one
            con = None
        if con is not None:
            if published_root(con) == str(self.root) and self.path.exists():
                return con
            con.close()  # written for another folder (moved), or the clients' copy was lost
        self.publish()  # also where nothing was published since private files (an older Jammi)
        return self._open_fresh()

    def _open_fresh(self) -> duckdb.DuckDBPyConnection:
        """The private file a publish just wrote (published.open_private)."""
        try:
            con = open_private(self.path)
        except duckdb.Error as err:
            raise ArtifactError(f"catalog {newest_private(self.path)} cannot be read: "
                                f"{str(err).splitlines()[0]}") from None
        if con is None:
            raise ArtifactError(f"catalog {self.path}: its stamp names no published file after a publish")
        return con

    # --- the state in PostgreSQL (jammi.tables.catalog_pg) -------------------------------

    def _state_mark(self, seq: int) -> str:
        return f"{self.pg.identity}#{seq}" if self.pg is not None else ""

    def _published_seq(self, con: duckdb.DuckDBPyConnection) -> int:
        """The state sequence `con`'s published file was made from (-1: another state, or none)."""
        if published_root(con) != str(self.root):
            return -1
        mark = published_state(con) or ""
        identity, _, seq = mark.rpartition("#")
        return int(seq) if self.pg is not None and identity == self.pg.identity and seq.isdigit() else -1

    def _open_published_postgres(self) -> duckdb.DuckDBPyConnection:
        """The published file, republished first when the state has moved past it (one query
        when it has not)."""
        assert self.pg is not None
        seq = self.pg.seq()
        try:
            con = open_private(self.path)
        except duckdb.Error:  # damaged: write a new one
            con = None
        if con is not None:
            if self._published_seq(con) >= seq:
                return con
            con.close()
        self._publish_state(self.pg.read())
        return self._open_fresh()

    @contextlib.contextmanager
    def _writing_postgres(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self._local_state_dir()
        assert self.pg is not None
        with self.pg.write(LOCK_WAIT_S) as con:
            yield con  # type: ignore[misc]  # the catalog's writers use what both connections have
        self._publish_state(con.committed)

    def _local_state_dir(self) -> Path:
        folder = self.state_path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ArtifactError(f"artifact_dir {str(self.artifact_dir)!r} is not writable: {err}") from None
        marker = folder / POSTGRES_MARKER
        if self.pg is not None and not marker.exists():
            marker.write_text(f"{self.pg.identity}\n", encoding="utf-8")
        return folder

    def _publish_state(self, state, force: bool = False) -> None:
        """Write this node's jammi.duckdb from `state` (catalog_pg.StateRows), unless a publisher
        beside this one already wrote it from the same or a later state."""
        folder = self._local_state_dir()
        from filelock import Timeout

        lock = _file_lock(folder / PUBLISH_LOCK_FILE, LOCK_WAIT_S)
        try:
            lock.acquire()
        except Timeout:
            raise ArtifactError(f"catalog {self.path}: another process has been publishing it for over "
                                f"{LOCK_WAIT_S:.0f}s") from None
        try:
            if not force:
                with contextlib.suppress(duckdb.Error):
                    found = open_private(self.path)
                    if found is not None:
                        with duck.lent(found):
                            if self._published_seq(found) >= state.seq:
                                return
            con = duck.take()
            with duck.lent(con):
                con.execute(f"ATTACH ':memory:' AS {STATE_ALIAS}")
                con.execute(f"USE {STATE_ALIAS}")
                con.execute(_SCHEMA)
                self._migrate(con)
                for table, (columns, rows) in state.tables.items():
                    _load_rows(con, table, columns, rows)
                publish(con, self.path, self.root, self._present_tables(con), self._make_views,
                        made_from=self._state_mark(state.seq))
        finally:
            lock.release()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ArtifactError(f"artifact_dir {str(self.artifact_dir)!r} is not writable: {err}") from None
        marker = self.state_path.parent / POSTGRES_MARKER
        if marker.exists():
            raise ArtifactError(f"the catalog of {self.artifact_dir} keeps its state in PostgreSQL "
                                f"({marker.read_text().strip()}); open it through its project file "
                                "(catalog: postgres), not as a local catalog")
        with self._state_lock():
            if not self.state_path.exists():
                self._seed_state()
            con = duck.take()
            with duck.lent(con):
                try:
                    _attach(con, self.state_path, STATE_ALIAS)
                    con.execute(f"USE {STATE_ALIAS}")
                    con.execute(_SCHEMA)
                    self._migrate(con)
                except duckdb.Error as err:  # a file DuckDB cannot open as its own is damaged
                    raise StateDamaged(self.state_path, err) from None
                try:
                    yield con
                except duckdb.Error as err:
                    if damaged(err):
                        raise StateDamaged(self.state_path, err) from None
                    raise

    @contextlib.contextmanager
    def _state_lock(self) -> Iterator[None]:
        """The local state's writer lock: one writing process at a time."""
        from filelock import Timeout

        lock = _file_lock(self.state_path.parent / LOCK_FILE, LOCK_WAIT_S)
        try:
            lock.acquire()
        except Timeout:
            raise ArtifactError(f"catalog {self.state_path}: another Jammi process has held the writer "
                                f"lock for over {LOCK_WAIT_S:.0f}s; is a writer stuck?") from None
        try:
            yield
        finally:
            lock.release()

    def repair_state(self) -> list[tuple[str, str, str]]:
        """Rebuild a damaged or lost state file from the newest published file, under the writer
        lock, as `_seed_state` starts one: the damaged file is kept beside it as
        `catalog.duckdb.damaged-<time>`. Returns (file, what was done, detail) for each thing done;
        nothing with the state in PostgreSQL or where there is nothing to rebuild from."""
        if self.pg is not None or not self.state_path.parent.is_dir():
            return []
        with self._state_lock():
            source = self._seed_source()
            where = self.state_path.relative_to(self.artifact_dir).as_posix()
            if not self.state_path.exists():
                if source is None:
                    return []
                self._seed_state()
                return [(where, "rebuilt: state lost", f"seeded from {self._named(source)}")]
            problem = state_problem(self.state_path)
            if problem is None:
                return []
            if source is None:
                raise ArtifactError(f"catalog state {self.state_path} is damaged ({problem}) and there is "
                                    f"no published {CATALOG_FILE} to rebuild it from")
            kept = self.state_path.with_name(f"{STATE_FILE}.damaged-{now():%Y%m%dT%H%M%S}")
            wal = self.state_path.with_name(STATE_FILE + ".wal")
            for damaged_file, aside in ((self.state_path, kept), (wal, kept.with_name(kept.name + ".wal"))):
                if damaged_file.exists():  # kept for whoever wants to look at it, then gone
                    write_atomic(aside, functools.partial(shutil.copyfile, damaged_file))
                    damaged_file.unlink()
            self._seed_state()
            return [(where, "rebuilt: state damaged", f"{problem}; seeded from {self._named(source)}, "
                                                       f"the damaged file kept as {kept.name}")]

    def _named(self, path: Path) -> str:
        return _relative(self.artifact_dir, path)

    def _seed_source(self) -> Path | None:
        """What a lost or damaged state is rebuilt from: the newest private published file
        (no client writes to it), else jammi.duckdb (a catalog from before private files)."""
        private = newest_private(self.path)
        if private is not None and state_problem(private) is None:
            return private
        return self.path if self.path.exists() else None

    def _seed_state(self) -> None:
        """Start the state from the newest published file when there is one: a catalog from
        before the state file (its tables were the catalog) or a published file whose state was
        lost."""
        source = self._seed_source()
        if source is None:
            return
        seed = self.state_path.with_name(self.state_path.name + ".seed")
        seed.unlink(missing_ok=True)
        con = duckdb.connect()
        try:
            if source == self.path and self.path.with_name(self.path.name + ".wal").exists():
                _attach(con, self.path, "old")  # fold an old catalog's WAL in
                con.execute("DETACH old")
            _attach(con, seed, "seed")
            _attach(con, source, "old", read_only=True)
            con.execute("USE seed")
            con.execute(_SCHEMA)
            self._migrate(con)
            for table in STATE_TABLES:
                columns = [r[0] for r in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE database_name = 'old' AND"
                    " table_name = ? AND column_name IN (SELECT column_name FROM duckdb_columns()"
                    " WHERE database_name = 'seed' AND table_name = ?)", [table, table]).fetchall()]
                if columns:
                    names = ", ".join(quote_ident(c) for c in columns)
                    con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM old.main.{table}")
            con.execute(f"UPDATE embedding_tables SET parquet_path = '{TABLES_DIR}/' ||"
                        " regexp_extract(parquet_path, '[^/]+$') WHERE parquet_path LIKE '/%'")
            con.execute(f"UPDATE asset_outputs SET path = '{FRAMES_DIR}/' || name || '.parquet'"
                        " WHERE path LIKE '/%'")
            con.execute("USE memory")
            con.execute("DETACH old")
            con.execute("DETACH seed")
        finally:
            con.close()
        os.replace(seed, self.state_path)

    @staticmethod
    def _present_tables(con: duckdb.DuckDBPyConnection) -> tuple[str, ...]:
        return tuple(t for t in STATE_TABLES if _has_table(con, t))

    @staticmethod
    def _migrate(con: duckdb.DuckDBPyConnection) -> None:
        have = {r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'embedding_tables'"
            " AND schema_name = 'main' AND database_name = current_database()"
        ).fetchall()}
        for column, sql_type in _ADDED_COLUMNS.items():
            if column not in have:
                con.execute(f"ALTER TABLE embedding_tables ADD COLUMN {column} {sql_type}")
        logged = {r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'refresh_log'"
            " AND schema_name = 'main' AND database_name = current_database()"
        ).fetchall()}
        for column, sql_type in _USAGE_COLUMNS.items():
            if column not in logged:
                con.execute(f"ALTER TABLE refresh_log ADD COLUMN {column} {sql_type}")

    # --- embedding tables -------------------------------------------------------------

    def begin_table(self, rec: dict) -> None:
        ts = now()
        version = rec.get("source_schema_version") or DEFAULT_SCHEMA_VERSION
        separator = rec.get("text_separator", TEXT_SEPARATOR)
        generation = rec["generation"]
        with self.connect() as con:
            con.execute(
                "INSERT INTO embedding_tables (table_name, pipeline, source, model_id, text_columns,"
                " key_column, dimensions, status, source_schema, parquet_path, builder,"
                " created_at, updated_at, source_schema_version, text_separator, generation)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    rec["table_name"], rec["pipeline"], rec["source"], rec["model_id"],
                    json.dumps(rec["text_columns"]), rec["key_column"], rec.get("dimensions"),
                    STATUS_BUILDING, json.dumps(rec.get("source_schema", {})),
                    _relative(self.data_root, rec["parquet_path"]), this_builder(), ts, ts, version,
                    separator, generation,
                ],
            )

    @staticmethod
    def _update(con: duckdb.DuckDBPyConnection, table_name: str, status: str, **counts) -> None:
        sets = ["status = ?", "updated_at = ?"]
        args: list = [status, now()]
        for k, v in counts.items():
            sets.append(f"{quote_ident(k)} = ?")
            args.append(v)
        con.execute(
            f"UPDATE embedding_tables SET {', '.join(sets)} WHERE table_name = ?",
            [*args, table_name],
        )

    def set_status(self, table_name: str, status: str, **counts) -> None:
        """Record a status without touching the active pointer (see `activate` for that)."""
        with self.connect() as con, _transaction(con):
            self._update(con, table_name, status, **counts)

    def activate(self, table_name: str, *, only_if_none: bool = False, first: Version | None = None,
                 **counts) -> bool:
        """Mark `table_name` ready and make it its pipeline's active table, in one transaction.

        With `only_if_none` (recovery) the pointer moves only when the pipeline serves no ready
        table through it yet. `first` records the table's version 0 (and its refresh_log row).
        Returns whether the table became active.
        """
        with self.connect() as con, _transaction(con):
            row = con.execute("SELECT pipeline FROM embedding_tables WHERE table_name = ?",
                              [table_name]).fetchone()
            if row is None:
                raise ArtifactError(f"embedding table {table_name!r} is not in the catalog")
            pipeline = row[0]
            before = self._serving(con, pipeline=pipeline)
            current = self._pointer(con, pipeline)
            self._update(con, table_name, STATUS_READY, **counts)
            if first is not None:
                self._insert_version(con, pipeline, first)
            switch = not (only_if_none and before is not None)
            if not switch:
                if current is None or current.table_name != before["table_name"]:
                    self._point(con, pipeline, before["table_name"], current)  # pin what served
            else:
                if current is None and before is not None:
                    current = Pointer(pipeline, before["table_name"], None, now())
                self._point(con, pipeline, table_name, current)
        return switch

    def switch_active(self, pipeline: str, table_name: str) -> Pointer:
        """Point `pipeline` at an existing ready table of its own (rollback), atomically."""
        with self.connect() as con, _transaction(con):
            row = con.execute("SELECT pipeline, status FROM embedding_tables WHERE table_name = ?",
                              [table_name]).fetchone()
            if row is None:
                raise ArtifactError(f"embedding table {table_name!r} does not exist; "
                                    "`jammi tables list` lists tables")
            if row[0] != pipeline:
                raise ArtifactError(f"embedding table {table_name!r} belongs to pipeline {row[0]!r},"
                                    f" not {pipeline!r}")
            if row[1] != STATUS_READY:
                raise ArtifactError(f"embedding table {table_name!r} is {row[1]}; only a ready table"
                                    " can be made active")
            serving = self._serving(con, pipeline=pipeline)
            current = self._pointer(con, pipeline)
            if current is None and serving is not None:
                current = Pointer(pipeline, serving["table_name"], None, now())
            if current is None or current.table_name != table_name:
                self._point(con, pipeline, table_name, current)
            return self._pointer(con, pipeline)

    def mark_removed(self, table_name: str) -> TableRecord:
        """Mark a table removed (its view dropped); refuses the table its pipeline serves."""
        with self.connect() as con, _transaction(con):
            rec = self._table(con, table_name)
            if rec is None:
                raise ArtifactError(f"embedding table {table_name!r} does not exist; "
                                    "`jammi tables list` lists tables")
            serving = self._serving(con, pipeline=rec.pipeline)
            if serving is not None and serving["table_name"] == table_name:
                raise ArtifactError(
                    f"embedding table {table_name!r} is the active table of pipeline {rec.pipeline!r} "
                    f"and cannot be removed; switch first with `jammi tables rollback {rec.pipeline}`"
                )
            if rec.status == STATUS_BUILDING:
                raise ArtifactError(f"embedding table {table_name!r} is still building; wait for it, "
                                    "or run `jammi recover` if its builder died")
            if rec.status != STATUS_REMOVED:
                self._update(con, table_name, STATUS_REMOVED)
            return rec

    @staticmethod
    def _pointer(con: duckdb.DuckDBPyConnection, pipeline: str) -> Pointer | None:
        if not _has_table(con, "active_tables"):
            return None
        row = con.execute("SELECT pipeline, table_name, previous_table, switched_at FROM active_tables"
                          " WHERE pipeline = ?", [pipeline]).fetchone()
        return Pointer(*row) if row else None

    @staticmethod
    def _point(con: duckdb.DuckDBPyConnection, pipeline: str, table_name: str,
               current: Pointer | None) -> None:
        previous = current.table_name if current and current.table_name != table_name else (
            current.previous_table if current else None)
        con.execute(_upsert(con, "active_tables", ("pipeline", "table_name", "previous_table", "switched_at"),
                            ("pipeline",)), [pipeline, table_name, previous, now()])

    @staticmethod
    def _serving(con: duckdb.DuckDBPyConnection, pipeline: str | None = None,
                 source: str | None = None) -> dict | None:
        where, args = _where(pipeline=pipeline, source=source)
        postgres = getattr(con, "is_postgres", False)
        serving = _serving_sql(_has_table(con, "active_tables"), portable=postgres)
        sql = f"SELECT * FROM ({serving}) s{where}"
        cur = con.execute(sql + " ORDER BY created_at DESC, table_name DESC LIMIT 1", args)
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
        found = dict(zip(names, row, strict=True)) if row else None
        if found is not None:
            found.pop("_rank", None)
        return found

    def _table(self, con: duckdb.DuckDBPyConnection, table_name: str) -> TableRecord | None:
        cur = con.execute("SELECT * FROM embedding_tables WHERE table_name = ?", [table_name])
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
        return _record(dict(zip(names, row, strict=True)), self.data_root) if row else None

    def active(self, pipeline: str | None = None, source: str | None = None) -> TableRecord | None:
        """The table search serves for a pipeline (its pointer, else its newest ready table) or
        for a source (the newest of its pipelines' active tables)."""
        if not self.exists():
            return None
        with self.connect(read_only=True) as con:
            row = self._serving(con, pipeline=pipeline, source=source)
        return _record(row, self.data_root) if row else None

    def active_names(self) -> set[str]:
        """Every pipeline's active table."""
        if not self.exists():
            return set()
        with self.connect(read_only=True) as con:
            sql = f"SELECT table_name FROM ({_serving_sql(_has_table(con, 'active_tables'))})"
            return {r[0] for r in con.execute(sql).fetchall()}

    def pointer(self, pipeline: str) -> Pointer | None:
        if not self.exists():
            return None
        with self.connect(read_only=True) as con:
            return self._pointer(con, pipeline)

    def tables(
        self, source: str | None = None, pipeline: str | None = None, status: str | None = None
    ) -> list[TableRecord]:
        where, args = _where(source=source, pipeline=pipeline, status=status)
        sql = f"SELECT * FROM embedding_tables{where} ORDER BY created_at DESC, table_name DESC"
        if not self.exists():
            return []
        with self.connect(read_only=True) as con:
            cur = con.execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        return [_record(r, self.data_root) for r in rows]

    def table(self, table_name: str) -> TableRecord | None:
        if not self.exists():
            return None
        with self.connect(read_only=True) as con:
            return self._table(con, table_name)

    def newest_ready(
        self, source: str | None = None, pipeline: str | None = None
    ) -> TableRecord | None:
        ready = self.tables(source=source, pipeline=pipeline, status=STATUS_READY)
        return ready[0] if ready else None

    # --- versions ---------------------------------------------------------------------

    @staticmethod
    def _insert_version(con: duckdb.DuckDBPyConnection, pipeline: str, version: Version) -> None:
        c = version.counts
        con.execute(
            _upsert(con, "table_versions", _VERSION_COLUMNS, ("table_name", "version")),
            [version.table_name, version.version, json.dumps([r.to_json() for r in version.segments]),
             json.dumps([r.to_json() for r in version.deletes]), version.rows, c.added, c.changed,
             c.deleted, c.unchanged, c.rows_encoded, c.outcome, c.seconds, version.committed_at or now()])
        con.execute("UPDATE embedding_tables SET current_version = ?, rows_embedded = ?, updated_at = ?"
                    " WHERE table_name = ?", [version.version, version.rows, now(), version.table_name])
        Catalog._log(con, pipeline, version.table_name, version.version, c)

    @staticmethod
    def _log(con: duckdb.DuckDBPyConnection, pipeline: str, table_name: str, version: int | None,
             counts: Counts) -> None:
        usage = counts.usage or {}
        names = ("pipeline", "table_name", "version", *_LOG_COLUMNS, "committed_at", *_USAGE_COLUMNS)
        con.execute(f"INSERT INTO refresh_log ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                    [pipeline, table_name, version, *(getattr(counts, k) for k in _LOG_COLUMNS), now(),
                     *(usage.get(k) for k in _USAGE_COLUMNS)])

    def log_refresh(self, pipeline: str, table_name: str, version: int | None, counts: Counts,
                    checks: tuple[str | None, str, str | None, list] | None = None) -> None:
        """A refresh that committed no version (nothing changed) still leaves its row in the log.
        `checks`: (run_id, asset, partition, outcomes) recorded in the same commit (record_checks)."""
        rows = _check_rows(*checks) if checks else []
        with self.connect() as con:
            self._log(con, pipeline, table_name, version, counts)
            if rows:
                con.executemany(_INSERT_CHECK, rows)

    def usage_by_table(self) -> dict[str, dict]:
        """Per table, its provider runs' figures summed over refresh_log (tables embedded in
        process have none)."""
        if not self.exists():
            return {}
        summed = ("requests", "tokens_sent", "retries", "rate_limited", "estimated_cost", "tokens_avoided",
                  "cost_avoided")
        with self.connect(read_only=True) as con:
            have = {r[0] for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = 'refresh_log'"
                " AND schema_name = 'main' AND database_name = current_database()").fetchall()}
            if not set(summed) <= have:  # a catalog published before providers existed
                return {}
            rows = con.execute(f"SELECT table_name, {', '.join(f'sum({c})' for c in summed)} FROM refresh_log"
                               " WHERE requests IS NOT NULL GROUP BY table_name").fetchall()
        return {r[0]: dict(zip(summed, r[1:], strict=True)) for r in rows}

    def next_version_number(self, table_name: str) -> int:
        """One past the newest committed version of the table (1 for a table with only version 0)."""
        with self.connect(read_only=True) as con:
            found = con.execute("SELECT max(version) FROM table_versions WHERE table_name = ?",
                                [table_name]).fetchone()[0] if _has_table(con, "table_versions") else None
        return 1 if found is None else found + 1

    def versions(self, table_name: str) -> list[Version]:
        """The table's committed versions, oldest first (version 0 implied for older tables)."""
        rec = None
        if self.exists():
            with self.connect(read_only=True) as con:
                rec = self._table(con, table_name)
                found = self._versions(con, table_name, None) if rec is not None else []
        if rec is None:
            raise ArtifactError(f"embedding table {table_name!r} does not exist")
        if not found:
            with self.connect(read_only=True) as con:
                return [with_sidecars(_initial_version(rec), self._sidecars(con, table_name))]
        return found

    @staticmethod
    def _versions(con: duckdb.DuckDBPyConnection, table_name: str, number: int | None) -> list[Version]:
        if not _has_table(con, "table_versions"):
            return []
        where, args = "table_name = ?", [table_name]
        if number is not None:
            where, args = where + " AND version = ?", args + [number]
        found = [_version(r) for r in _rows(con.execute(
            f"SELECT * FROM table_versions WHERE {where} ORDER BY version", args))]
        if not found:
            return found
        sidecars = Catalog._sidecars(con, table_name)
        return [with_sidecars(v, sidecars) for v in found]

    @staticmethod
    def _sidecars(con: duckdb.DuckDBPyConnection, table_name: str) -> dict[str, str]:
        """Sidecar file name -> the digest recorded when it was built, for the table's segments."""
        if not _has_table(con, "sidecar_checksums"):
            return {}
        return dict(con.execute("SELECT file, digest FROM sidecar_checksums WHERE table_name = ?",
                                [table_name]).fetchall())

    def record_sidecars(self, table_name: str, digests: Iterable[tuple[str, str]]) -> None:
        """Record the digests of sidecars just built (`(file name, digest)` pairs, as
        jammi.tables.index.IndexStats.digests gives them), replacing a rebuilt sidecar's."""
        self.record_checks(None, "", None, [], sidecars=(table_name, digests))

    @staticmethod
    def _current(con: duckdb.DuckDBPyConnection, rec: TableRecord) -> Version:
        if rec.current_version is None:
            return with_sidecars(_initial_version(rec), Catalog._sidecars(con, rec.table_name))
        found = Catalog._versions(con, rec.table_name, rec.current_version)
        if not found:
            raise ArtifactError(f"{rec.table_name}: current version {rec.current_version} is not in the "
                                f"catalog; run `jammi verify {rec.pipeline} --repair`")
        return found[0]

    def current_version(self, rec: TableRecord) -> Version:
        """The version of `rec` that search and the views serve."""
        if rec.current_version is None:
            return _initial_version(rec)
        with self.connect(read_only=True) as con:
            return self._current(con, rec)

    def serving(self, *, pipeline: str | None = None, source: str | None = None,
                table_name: str | None = None) -> tuple[TableRecord, Version] | None:
        """In one read of the published file: the table `active(pipeline, source)` names (or the
        table `table_name`, whatever its status) and the version of it that is served."""
        if not self.exists():
            return None
        with self.connect(read_only=True) as con:
            if table_name is not None:
                rec = self._table(con, table_name)
            else:
                row = self._serving(con, pipeline=pipeline, source=source)
                rec = _record(row, self.data_root) if row else None
            if rec is None:
                return None
            return rec, (self._current(con, rec) if rec.status == STATUS_READY else
                         with_sidecars(_initial_version(rec), self._sidecars(con, rec.table_name)))

    def snapshot(self, pipeline: str, frames: list[Location] | tuple = ()) -> Snapshot:
        """What a step of `pipeline` reads before it works, in one read: the table search
        serves (`active`), the version of it served (`current_version`), the pointer, and the
        digests recorded for the frame files `frames` (frame_digests)."""
        if not self.exists():
            return Snapshot(None, None, None)
        with self.connect(read_only=True) as con:
            row = self._serving(con, pipeline=pipeline)
            rec = _record(row, self.data_root) if row else None
            return Snapshot(rec, self._current(con, rec) if rec is not None else None,
                            self._pointer(con, pipeline), self._frame_digests(con, list(frames)))

    def stamp(self) -> tuple | None:
        """Differs after every publish (see jammi.tables.published.published_stamp): a reader
        that keeps what it read checks this, which costs a stat, not an open. With the state in
        PostgreSQL: the state sequence as PostgreSQL notifies it (PostgresState.watched_seq: no
        round trip while nothing was committed), since another node may have written."""
        if self.pg is not None:
            seq = self.pg.watched_seq()
            return (self.pg.identity, seq) if seq > 0 else None
        return published_stamp(self.path)

    def commit_version(self, pipeline: str, version: Version, based_on: Version,
                       sidecars: Iterable[tuple[str, str]] = ()) -> None:
        """Make `version` current, atomically, if the table still serves `based_on` (else another
        refresh committed first and this one must start again from what is current now).
        `sidecars`: the digests of the sidecars built for its new segments, recorded with it."""
        with self.connect() as con, _transaction(con):
            row = con.execute("SELECT status, current_version FROM embedding_tables WHERE table_name = ?",
                              [version.table_name]).fetchone()
            if row is None or row[0] != STATUS_READY:
                raise ArtifactError(f"pipeline {pipeline!r}: table {version.table_name} is "
                                    f"{'gone' if row is None else row[0]}; nothing was committed")
            serving = 0 if row[1] is None else row[1]
            if serving != based_on.version:
                raise ArtifactError(f"pipeline {pipeline!r}: {version.table_name} moved to version "
                                    f"{serving} while this refresh worked from {based_on.version}; "
                                    "nothing was committed; run it again")
            if row[1] is None:  # a table from before versions: record its version 0 first
                self._insert_version(con, pipeline, based_on)
            self._insert_version(con, pipeline, version)
            rows = [[version.table_name, file, digest, now()] for file, digest in sidecars]
            if rows:
                con.executemany(_upsert(con, "sidecar_checksums", _SIDECAR_COLUMNS, ("table_name", "file")),
                                rows)

    def set_current_version(self, pipeline: str, table_name: str, number: int) -> Version:
        """Serve an earlier (or later) committed version of the table again (rollback)."""
        chosen = next((v for v in self.versions(table_name) if v.version == number), None)
        if chosen is None:
            raise ArtifactError(f"{table_name} has no version {number}; `jammi tables versions "
                                f"{pipeline}` lists them")
        with self.connect() as con, _transaction(con):
            con.execute("UPDATE embedding_tables SET current_version = ?, rows_embedded = ?, updated_at = ?"
                        " WHERE table_name = ?", [number, chosen.rows, now(), table_name])
            self._log(con, pipeline, table_name, number, Counts(outcome=OUTCOME_ROLLED_BACK))
        return chosen

    def drop_versions(self, table_name: str, numbers: list[int]) -> None:
        if not numbers:
            return
        with self.connect() as con:
            listed = "version = ANY(?)" if getattr(con, "is_postgres", False) else "list_contains(?, version)"
            con.execute(f"DELETE FROM table_versions WHERE table_name = ? AND {listed}",
                        [table_name, numbers])

    # --- quality ----------------------------------------------------------------------

    def record_checks(self, run_id: str | None, asset: str, partition: str | None, outcomes: list,
                      sidecars: tuple[str, Iterable[tuple[str, str]]] | None = None) -> None:
        """One row per check outcome: `SELECT * FROM jammi.quality_report` shows quality over time.
        `sidecars`: (table name, (file, digest) pairs) of sidecars the step built, recorded in
        the same commit (record_sidecars)."""
        rows = _check_rows(run_id, asset, partition, outcomes)
        built = [[sidecars[0], file, digest, now()] for file, digest in sidecars[1]] if sidecars else []
        if not rows and not built:
            return
        with self.connect() as con, (_transaction(con) if built else contextlib.nullcontext()):
            if built:
                con.executemany(_upsert(con, "sidecar_checksums", _SIDECAR_COLUMNS, ("table_name", "file")),
                                built)
            if rows:
                con.executemany(_INSERT_CHECK, rows)

    # --- fusion labels ----------------------------------------------------------------

    def add_fusion_labels(self, rows: list[dict]) -> int:
        """Store answers about entity record pairs (`LABEL_COLUMNS`, the pair's sources in sorted
        order); a later answer about the same pair replaces the earlier one. Returns how many."""
        if not rows:
            return 0
        with self.connect() as con:
            con.executemany(_upsert(con, "fusion_labels", LABEL_COLUMNS, LABEL_COLUMNS[:5]),
                            [[r.get(c) for c in LABEL_COLUMNS] for r in rows])
        return len(rows)

    def fusion_labels(self, entity: str) -> list[dict]:
        """Every stored answer about `entity`'s record pairs (`SELECT * FROM jammi.fusion_labels`)."""
        if not self.exists():
            return []
        with self.connect(read_only=True) as con:
            if not _has_table(con, "fusion_labels"):  # a catalog published before labels existed
                return []
            return _rows(con.execute("SELECT * FROM fusion_labels WHERE entity = ? ORDER BY labelled_at,"
                                     " left_source, left_id, right_source, right_id", [entity]))

    # --- views ------------------------------------------------------------------------

    def register_output(self, name: str, path: Location, rows: int, file: Location | None = None,
                        digest: str | None = None) -> None:
        """Record asset `name`'s frame (its view reads `path`: a file, or a partitioned asset's
        folder) and, in the same commit, the `digest` of the frame file just written (`file`,
        default `path`: a partition's file), which readers compare it with (jammi.checksums)."""
        with self.connect() as con, (_transaction(con) if digest else contextlib.nullcontext()):
            con.execute(_upsert(con, "asset_outputs", ("name", "path", "rows", "updated_at"), ("name",)),
                        [name, _relative(self.data_root, path), rows, now()])
            if digest:
                con.execute(_upsert(con, "frame_checksums", ("path", "digest", "recorded_at"), ("path",)),
                            [_relative(self.data_root, file or path), digest, now()])

    def frame_digests(self, files: list[Location]) -> dict[Location, str]:
        """The digest recorded for each of the frame `files` that has one."""
        if not files or not self.exists():
            return {}
        with self.connect(read_only=True) as con:
            return self._frame_digests(con, files)

    def _frame_digests(self, con: duckdb.DuckDBPyConnection, files: list[Location]) -> dict[Location, str]:
        if not files or not _has_table(con, "frame_checksums"):
            return {}
        wanted = {_relative(self.data_root, f): f for f in files}
        listed = "path = ANY(?)" if getattr(con, "is_postgres", False) else "list_contains(?, path)"
        rows = con.execute(f"SELECT path, digest FROM frame_checksums WHERE {listed}",
                           [list(wanted)]).fetchall()
        return {wanted[p]: d for p, d in rows}

    def _make_views(self, con: duckdb.DuckDBPyConnection) -> None:
        """The published file's views, made over its copies of the state tables."""
        if self.tables_url is not None:  # the views read the frames' and tables' URLs
            store.register_duckdb(con, [self.tables_url])
        if _has_table(con, "asset_outputs"):
            for name, stored in con.execute("SELECT name, path FROM asset_outputs").fetchall():
                path = recorded_frame(self.data_root, name, stored)
                if path is None:  # a deleted frame gets no view until it is materialized again
                    continue
                sql = frame_view_sql(path)
                files = partition_files(path) if is_folder(path) else [path]
                if _binds(name, sql, files, replaced=True):  # a damaged frame gets no view either
                    con.execute(f"CREATE OR REPLACE VIEW {quote_ident(name)} AS {sql}")
        ready = {r["table_name"]: _record(r, self.data_root) for r in _rows(con.execute(
            "SELECT * FROM embedding_tables WHERE status = ?", [STATUS_READY]))}
        current = {r["table_name"]: _version(r) for r in _rows(con.execute(
            "SELECT v.* FROM table_versions v JOIN embedding_tables e ON v.table_name = e.table_name"
            " AND v.version = e.current_version WHERE e.status = ?", [STATUS_READY]))}
        versions = {name: current.get(name) or _initial_version(rec) for name, rec in ready.items()}
        select = {name: view_sql(ready[name].tables_dir, v) for name, v in versions.items()
                  if all(store.exists(store.join(ready[name].tables_dir, r.file))
                         for r in (*v.segments, *v.deletes))}
        for name, sql in list(select.items()):  # a table whose files are gone or damaged gets no view:
            v = versions[name]  # `jammi verify` names them
            if not _binds(name, sql, [store.join(ready[name].tables_dir, r.file)
                                      for r in (*v.segments, *v.deletes)]):
                del select[name]
        views = dict(select)
        serving = _serving_sql(_has_table(con, "active_tables"))
        for pipeline, source, table_name in con.execute(
            f"SELECT pipeline, source, table_name FROM ({serving}) ORDER BY created_at, table_name"
        ).fetchall():  # oldest first: a source view serves the newest of its pipelines' active tables
            if table_name in select:
                views[pipeline_view(pipeline)] = select[table_name]
                views[source_view(source)] = select[table_name]
        for view, sql in views.items():
            con.execute(f"CREATE OR REPLACE VIEW {quote_ident(view)} AS {sql}")
        con.execute(
            "CREATE OR REPLACE VIEW embedding_status AS SELECT table_name, pipeline, source,"
            " model_id, status, table_name IN (SELECT table_name FROM"
            f" ({serving})) AS active, dimensions, rows_embedded, rows_skipped, rows_failed,"
            " rows_truncated, source_schema_version, generation, current_version, created_at"
            " FROM embedding_tables"
        )

    def refresh_views(self) -> None:
        self.publish()


_BINDS: dict[tuple, bool] = {}  # a view's files (path, size, mtime) -> whether DuckDB binds its SELECT


def _identity(file: Location, replaced: bool = False) -> tuple:
    if store.is_url(file):
        return (str(file), *(store.state(file) or ())) if replaced else (str(file), 0, 0)
    st = os.stat(file)
    return (str(file), st.st_size, st.st_mtime_ns)


def _binds(name: str, sql: str, files: list[Location], replaced: bool = False) -> bool:
    """Whether DuckDB binds a view's `sql` (a damaged deletion file, segment footer or frame
    fails it: `don't know what type`), tried once per process for the same files, on a
    connection of its own: the publish is one transaction, which a failed statement would
    abort. A table's objects under a URL are immutable under their unique names: keyed by
    name; frames, which are `replaced` in place, by their size and modification time too."""
    try:
        key = tuple(_identity(f, replaced) for f in files)
    except OSError:
        return False
    found = _BINDS.get(key)
    if found is None:
        con = duck.take()
        with duck.lent(con):
            store.register_duckdb(con, files)
            try:
                con.execute(f"DESCRIBE {sql}")
                found = True
            except duckdb.Error as err:
                logging.getLogger(__name__).info("table %s gets no view: %s", name, str(err).splitlines()[0])
                found = False
        _BINDS[key] = found
    return found


def frame_view_sql(path: Location) -> str:
    """SELECT of a stored frame: its file, or a partitioned asset's folder, where a key found
    in several partitions shows its row from the latest partition (a URL's file system must be
    registered with the connection that runs it: jammi.store.register_duckdb)."""
    if not is_folder(path):
        return f"SELECT * FROM read_parquet({quote_literal(str(path))})"
    files = quote_literal(parquet_glob(path))
    key = partition_key_of(path)
    if not key:
        return f"SELECT * FROM read_parquet({files}, union_by_name = true)"
    return (f"SELECT * EXCLUDE (filename) FROM read_parquet({files}, union_by_name = true, filename = true) "
            f"QUALIFY row_number() OVER (PARTITION BY CAST({quote_ident(key)} AS VARCHAR) "
            "ORDER BY filename DESC) = 1")


def state_problem(path: Path) -> str | None:
    """Why the DuckDB file `path` cannot be read whole (None: every table of it reads): opened
    read-only in a fresh instance and every row of every table read, so a damaged block is
    found wherever it lies."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH {quote_literal(str(path))} AS checked (READ_ONLY)")
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'checked'"
                                    " AND schema_name = 'main'").fetchall():
            con.execute(f"SELECT * FROM checked.main.{quote_ident(table)}").fetchall()
        return None
    except duckdb.Error as err:
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    finally:
        con.close()


_INSERT_CHECK = "INSERT INTO quality_report VALUES (?,?,?,?,?,?,?,?,?,?,?)"


def _check_rows(run_id: str | None, asset: str, partition: str | None, outcomes: list) -> list[list]:
    ts = now()
    return [[run_id, asset, partition, o.name, o.severity, bool(o.passed),
             None if o.statistic is None else float(o.statistic),
             None if o.threshold is None else float(o.threshold),
             o.description, json.dumps(o.examples, default=str), ts] for o in outcomes]


def _load_rows(con: duckdb.DuckDBPyConnection, table: str, columns: list[str], rows: list[tuple]) -> None:
    """Insert rows read from PostgreSQL into the DuckDB table of the same name and columns."""
    if not rows:
        return
    import pyarrow as pa

    data = pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)})
    con.register("_jammi_rows", data)
    try:
        names = ", ".join(quote_ident(c) for c in columns)
        con.execute(f"INSERT INTO {quote_ident(table)} ({names}) SELECT {names} FROM _jammi_rows")
    finally:
        con.unregister("_jammi_rows")


def _record(r: dict, root: Location) -> TableRecord:
    return TableRecord(
        table_name=r["table_name"],
        pipeline=r["pipeline"],
        source=r["source"],
        model_id=r["model_id"],
        text_columns=json.loads(r["text_columns"]),
        key_column=r["key_column"],
        dimensions=r["dimensions"],
        status=r["status"],
        rows_embedded=r["rows_embedded"] or 0,
        rows_skipped=r["rows_skipped"] or 0,
        rows_failed=r["rows_failed"] or 0,
        rows_truncated=r["rows_truncated"] or 0,
        source_schema=json.loads(r["source_schema"] or "{}"),
        parquet_path=_table_path(root, r["parquet_path"]),
        builder=r["builder"],
        error=r["error"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        source_schema_version=r.get("source_schema_version") or DEFAULT_SCHEMA_VERSION,
        text_separator=r.get("text_separator") or TEXT_SEPARATOR,
        generation=r.get("generation") or generation_fingerprint(
            r.get("source_schema_version") or DEFAULT_SCHEMA_VERSION, json.loads(r["text_columns"]),
            r.get("text_separator") or TEXT_SEPARATOR, r["model_id"]),
        current_version=r.get("current_version"),
    )


def with_sidecars(version: Version, sidecars: dict[str, str]) -> Version:
    """`version` with the recorded digests of its segments' sidecars (from `sidecars`, all of
    the table's: file name -> digest)."""
    stems = {ref.file.removesuffix(".parquet") for ref in version.segments}
    mine = tuple(sorted((f, d) for f, d in sidecars.items() if f.rsplit(".", 1)[0] in stems))
    return dataclasses.replace(version, sidecars=mine)


def _initial_version(rec: TableRecord) -> Version:
    """Version 0 of a table: its one Parquet file."""
    return Version(rec.table_name, 0, (FileRef(store.name_of(rec.parquet_path), rec.rows_embedded),),
                   rows=rec.rows_embedded, committed_at=rec.updated_at)


def _version(r: dict) -> Version:
    refs = lambda text: tuple(FileRef.from_json(d) for d in json.loads(text))  # noqa: E731
    counts = Counts(**{k: (r[k] if r[k] is not None else Counts.__dataclass_fields__[k].default)
                       for k in _LOG_COLUMNS})
    return Version(r["table_name"], r["version"], refs(r["segments"]), refs(r["deletes"]), r["rows"],
                   counts, r["committed_at"])
