"""The catalog: a DuckDB file in the artifact directory that records every embedding
table and its status, and holds a view per asset output and per embedding table so
`SELECT ... FROM jammi.<name>` works from any DuckDB client opening the file."""

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

from jammi_assets.errors import ArtifactError

CATALOG_FILE = "jammi.duckdb"
TABLES_DIR = "jammi_db"
FRAMES_DIR = "frames"
LOCK_WAIT_S = 60.0

STATUS_BUILDING = "building"
STATUS_READY = "ready"
STATUS_FAILED = "failed"

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
    updated_at TIMESTAMP NOT NULL
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


def quote_ident(name: str) -> str:
    """Quote a user-supplied table or column name as a DuckDB identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def frame_path(artifact_dir: Path, asset_name: str) -> Path:
    """Where the frame IO manager keeps an asset's output."""
    return Path(artifact_dir) / FRAMES_DIR / f"{asset_name}.parquet"


def pipeline_view(pipeline: str) -> str:
    """The view over a pipeline's newest ready table (same name as its asset)."""
    return f"{pipeline}_embeddings"


def source_view(source: str) -> str:
    """The view over the newest ready table of a source, whichever pipeline made it."""
    return f"{source}_latest_embeddings"


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

    @property
    def base_path(self) -> Path:
        return self.parquet_path.with_suffix("")


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
            yield con
        finally:
            con.close()

    # --- embedding tables -------------------------------------------------------------

    def begin_table(self, rec: dict) -> None:
        ts = now()
        with self.connect() as con:
            con.execute(
                "INSERT INTO embedding_tables (table_name, pipeline, source, model_id, text_columns,"
                " key_column, dimensions, status, source_schema, parquet_path, builder,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    rec["table_name"], rec["pipeline"], rec["source"], rec["model_id"],
                    json.dumps(rec["text_columns"]), rec["key_column"], rec.get("dimensions"),
                    STATUS_BUILDING, json.dumps(rec.get("source_schema", {})),
                    str(rec["parquet_path"]), this_builder(), ts, ts,
                ],
            )

    def set_status(self, table_name: str, status: str, **counts) -> None:
        sets = ["status = ?", "updated_at = ?"]
        args: list = [status, now()]
        for k, v in counts.items():
            sets.append(f"{quote_ident(k)} = ?")
            args.append(v)
        with self.connect() as con:
            con.execute(
                f"UPDATE embedding_tables SET {', '.join(sets)} WHERE table_name = ?",
                [*args, table_name],
            )
            if status == STATUS_FAILED:
                con.execute(f"DROP VIEW IF EXISTS {quote_ident(table_name)}")
            self._refresh_table_views(con)

    def tables(
        self, source: str | None = None, pipeline: str | None = None, status: str | None = None
    ) -> list[TableRecord]:
        where, args = [], []
        if source is not None:
            where.append("source = ?")
            args.append(source)
        if pipeline is not None:
            where.append("pipeline = ?")
            args.append(pipeline)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = "SELECT * FROM embedding_tables"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, table_name DESC"
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
        rows = con.execute(
            "SELECT table_name, pipeline, source, parquet_path FROM embedding_tables"
            " WHERE status = ? ORDER BY created_at, table_name",
            [STATUS_READY],
        ).fetchall()
        views: dict[str, str] = {}
        for table_name, pipeline, source, path in rows:  # oldest first: newest wins
            views[table_name] = path
            views[pipeline_view(pipeline)] = path
            views[source_view(source)] = path
        for view, path in views.items():
            con.execute(
                f"CREATE OR REPLACE VIEW {quote_ident(view)} AS "
                f"SELECT * FROM read_parquet({quote_literal(path)})"
            )
        con.execute(
            "CREATE OR REPLACE VIEW embedding_status AS SELECT table_name, pipeline, source,"
            " model_id, status, dimensions, rows_embedded, rows_skipped, rows_failed,"
            " rows_truncated, created_at FROM embedding_tables"
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
    )
