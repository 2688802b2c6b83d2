"""The catalog: a DuckDB file in the artifact directory that records every embedding
table and its status, and holds a view per asset output and per embedding table so
`SELECT ... FROM jammi.<name>` works from any DuckDB client opening the file.

Each pipeline has an ACTIVE pointer (`active_tables`): the table search and the
`<pipeline>_embeddings` / `<source>_latest_embeddings` views serve. A new table is built
beside the active one and the pointer is switched, in the same transaction that marks
it ready, only once it has passed its checks (blue/green); older ready tables stay for
rollback until removed. A catalog without a pointer for a pipeline serves its newest
ready table."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from jammi import keys
from jammi.embedding.texts import TEXT_SEPARATOR
from jammi.errors import ArtifactError
from jammi.tables.generation import DEFAULT_SCHEMA_VERSION, generation_fingerprint

CATALOG_FILE = "jammi.duckdb"
TABLES_DIR = "jammi_db"
LOCK_WAIT_S = 60.0

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
CREATE TABLE IF NOT EXISTS asset_outputs (
    name VARCHAR PRIMARY KEY,
    path VARCHAR NOT NULL,
    rows BIGINT,
    updated_at TIMESTAMP NOT NULL
);
"""
# columns added after the first release: catalogs written before them gain them on open
_ADDED_COLUMNS = {"source_schema_version": "VARCHAR", "text_separator": "VARCHAR", "generation": "VARCHAR"}


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


def _serving_sql(with_pointer: bool) -> str:
    """One row per pipeline: the ready table its pointer names, else its newest ready table."""
    pointed = "(a.table_name IS NOT NULL) DESC, " if with_pointer else ""
    join = (" LEFT JOIN active_tables a ON a.pipeline = e.pipeline AND a.table_name = e.table_name"
            if with_pointer else "")
    return (
        "SELECT * EXCLUDE (_rank) FROM (SELECT e.*, row_number() OVER (PARTITION BY e.pipeline"
        f" ORDER BY {pointed}e.created_at DESC, e.table_name DESC) AS _rank"
        f" FROM embedding_tables e{join} WHERE e.status = '{STATUS_READY}') WHERE _rank = 1"
    )


def _where(**equal: str | None) -> tuple[str, list]:
    """` WHERE a = ? AND b = ?` over the given filters that are not None, and their values."""
    given = {column: value for column, value in equal.items() if value is not None}
    clause = " AND ".join(f"{column} = ?" for column in given)
    return (f" WHERE {clause}" if clause else ""), list(given.values())


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main'", [name]
    ).fetchone()[0])


@contextlib.contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def this_builder() -> str:
    """host:pid:start-time, so a recycled pid is not mistaken for a live builder."""
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
    parquet_path: Path
    builder: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    source_schema_version: str = DEFAULT_SCHEMA_VERSION
    text_separator: str = TEXT_SEPARATOR
    generation: str = ""

    @property
    def base_path(self) -> Path:
        return self.parquet_path.with_suffix("")


@dataclass(frozen=True)
class Pointer:
    """A pipeline's row in `active_tables`."""

    pipeline: str
    table_name: str
    previous_table: str | None
    switched_at: datetime


class Catalog:
    """Short-lived connections with a lock wait: DuckDB allows one writing process."""

    def __init__(self, artifact_dir: Path):
        self.artifact_dir = Path(artifact_dir)
        self.path = self.artifact_dir / CATALOG_FILE

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if read_only and not self.path.exists():
            read_only = False
        if not read_only:
            try:
                self.artifact_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ArtifactError(
                    f"artifact_dir {str(self.artifact_dir)!r} is not writable: {err}"
                ) from None
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as err:
                if "lock" not in str(err).lower() or time.monotonic() > deadline:
                    raise ArtifactError(f"catalog {self.path} cannot be opened: {err}") from None
                time.sleep(0.2)
        try:
            if not read_only:
                con.execute(_SCHEMA)
                self._migrate(con)
            yield con
        finally:
            con.close()

    @staticmethod
    def _migrate(con: duckdb.DuckDBPyConnection) -> None:
        have = {r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'embedding_tables'"
            " AND schema_name = 'main'"
        ).fetchall()}
        for column, sql_type in _ADDED_COLUMNS.items():
            if column not in have:
                con.execute(f"ALTER TABLE embedding_tables ADD COLUMN {column} {sql_type}")

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
                    str(rec["parquet_path"]), this_builder(), ts, ts, version, separator, generation,
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
        if status in (STATUS_FAILED, STATUS_REMOVED):
            con.execute(f"DROP VIEW IF EXISTS {quote_ident(table_name)}")

    def set_status(self, table_name: str, status: str, **counts) -> None:
        """Record a status without touching the active pointer (see `activate` for that)."""
        with self.connect() as con, _transaction(con):
            self._update(con, table_name, status, **counts)
            self._refresh_table_views(con)

    def activate(self, table_name: str, *, only_if_none: bool = False, **counts) -> bool:
        """Mark `table_name` ready and make it its pipeline's active table, in one transaction.

        With `only_if_none` (recovery) the pointer moves only when the pipeline serves no ready
        table through it yet. Returns whether the table became active.
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
            switch = not (only_if_none and before is not None)
            if not switch:
                if current is None or current.table_name != before["table_name"]:
                    self._point(con, pipeline, before["table_name"], current)  # pin what served
            else:
                if current is None and before is not None:
                    current = Pointer(pipeline, before["table_name"], None, now())
                self._point(con, pipeline, table_name, current)
            self._refresh_table_views(con)
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
            self._refresh_table_views(con)
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
                self._refresh_table_views(con)
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
        con.execute("INSERT OR REPLACE INTO active_tables VALUES (?, ?, ?, ?)",
                    [pipeline, table_name, previous, now()])

    @staticmethod
    def _serving(con: duckdb.DuckDBPyConnection, pipeline: str | None = None,
                 source: str | None = None) -> dict | None:
        where, args = _where(pipeline=pipeline, source=source)
        sql = f"SELECT * FROM ({_serving_sql(_has_table(con, 'active_tables'))}){where}"
        cur = con.execute(sql + " ORDER BY created_at DESC, table_name DESC LIMIT 1", args)
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
        return dict(zip(names, row, strict=True)) if row else None

    def _table(self, con: duckdb.DuckDBPyConnection, table_name: str) -> TableRecord | None:
        cur = con.execute("SELECT * FROM embedding_tables WHERE table_name = ?", [table_name])
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
        return _record(dict(zip(names, row, strict=True))) if row else None

    def active(self, pipeline: str | None = None, source: str | None = None) -> TableRecord | None:
        """The table search serves for a pipeline (its pointer, else its newest ready table) or
        for a source (the newest of its pipelines' active tables)."""
        if not self.path.exists():
            return None
        with self.connect(read_only=True) as con:
            row = self._serving(con, pipeline=pipeline, source=source)
        return _record(row) if row else None

    def active_names(self) -> set[str]:
        """Every pipeline's active table."""
        if not self.path.exists():
            return set()
        with self.connect(read_only=True) as con:
            sql = f"SELECT table_name FROM ({_serving_sql(_has_table(con, 'active_tables'))})"
            return {r[0] for r in con.execute(sql).fetchall()}

    def pointer(self, pipeline: str) -> Pointer | None:
        if not self.path.exists():
            return None
        with self.connect(read_only=True) as con:
            return self._pointer(con, pipeline)

    def tables(
        self, source: str | None = None, pipeline: str | None = None, status: str | None = None
    ) -> list[TableRecord]:
        where, args = _where(source=source, pipeline=pipeline, status=status)
        sql = f"SELECT * FROM embedding_tables{where} ORDER BY created_at DESC, table_name DESC"
        if not self.path.exists():
            return []
        with self.connect(read_only=True) as con:
            cur = con.execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        return [_record(r) for r in rows]

    def table(self, table_name: str) -> TableRecord | None:
        for rec in self.tables():
            if rec.table_name == table_name:
                return rec
        return None

    def newest_ready(
        self, source: str | None = None, pipeline: str | None = None
    ) -> TableRecord | None:
        ready = self.tables(source=source, pipeline=pipeline, status=STATUS_READY)
        return ready[0] if ready else None

    # --- quality ----------------------------------------------------------------------

    def record_checks(self, run_id: str | None, asset: str, partition: str | None, outcomes: list) -> None:
        """One row per check outcome: `SELECT * FROM jammi.quality_report` shows quality over time."""
        ts = now()
        rows = [
            [run_id, asset, partition, o.name, o.severity, bool(o.passed),
             None if o.statistic is None else float(o.statistic),
             None if o.threshold is None else float(o.threshold),
             o.description, json.dumps(o.examples, default=str), ts]
            for o in outcomes
        ]
        if not rows:
            return
        with self.connect() as con:
            con.executemany("INSERT INTO quality_report VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)

    # --- views ------------------------------------------------------------------------

    def register_output(self, name: str, path: Path, rows: int) -> None:
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO asset_outputs VALUES (?, ?, ?, ?)",
                [name, str(path), rows, now()],
            )
            con.execute(
                f"CREATE OR REPLACE VIEW {quote_ident(name)} AS "
                f"SELECT * FROM read_parquet({quote_literal(str(path))})"
            )

    def _refresh_table_views(self, con: duckdb.DuckDBPyConnection) -> None:
        views: dict[str, str] = {}
        for table_name, path in con.execute(
            "SELECT table_name, parquet_path FROM embedding_tables WHERE status = ?", [STATUS_READY]
        ).fetchall():
            views[table_name] = path
        serving = _serving_sql(_has_table(con, "active_tables"))
        for pipeline, source, path in con.execute(
            f"SELECT pipeline, source, parquet_path FROM ({serving})"
            " ORDER BY created_at, table_name"
        ).fetchall():  # oldest first: a source view serves the newest of its pipelines' active tables
            views[pipeline_view(pipeline)] = path
            views[source_view(source)] = path
        for view, path in views.items():
            con.execute(
                f"CREATE OR REPLACE VIEW {quote_ident(view)} AS "
                f"SELECT * FROM read_parquet({quote_literal(path)})"
            )
        con.execute(
            "CREATE OR REPLACE VIEW embedding_status AS SELECT table_name, pipeline, source,"
            " model_id, status, table_name IN (SELECT table_name FROM"
            f" ({serving})) AS active, dimensions, rows_embedded, rows_skipped, rows_failed,"
            " rows_truncated, source_schema_version, generation, created_at FROM embedding_tables"
        )

    def refresh_views(self) -> None:
        with self.connect() as con:
            self._refresh_table_views(con)


def _record(r: dict) -> TableRecord:
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
        parquet_path=Path(r["parquet_path"]),
        builder=r["builder"],
        error=r["error"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        source_schema_version=r.get("source_schema_version") or DEFAULT_SCHEMA_VERSION,
        text_separator=r.get("text_separator") or TEXT_SEPARATOR,
        generation=r.get("generation") or generation_fingerprint(
            r.get("source_schema_version") or DEFAULT_SCHEMA_VERSION, json.loads(r["text_columns"]),
            r.get("text_separator") or TEXT_SEPARATOR, r["model_id"]),
    )
