"""A pgvector sink: PostgreSQL tables `<schema>.<name>__<key>`, one per Jammi table (and layout),
served under the stable name `<schema>.<name>`, a view over the one that passed its checks, and
the state table `<schema>.<name>__jammi` (slot, Jammi table, version, layout, serving). Each change
is one transaction: the rows, the index and the state row commit together or not at all, under
an advisory lock on the sink's name, so two writers never interleave.

Store rows: `_row_id` (primary key), `_content_hash`, `_columns_hash`, `embedding vector(N)` and
the selected columns, typed from the frame (text, bigint, double precision, boolean, date,
timestamp; anything else as text)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from jammi.errors import SinkError, SinkMoved
from jammi.redact import redact
from jammi.sinks.rows import COLUMNS_HASH
from jammi.sinks.state import Applied, SlotState
from jammi.spec.sinks import PgvectorSinkSpec

VECTOR_COLUMN = "embedding"
_OPS = {"cosine": "vector_cosine_ops", "l2": "vector_l2_ops", "ip": "vector_ip_ops"}
DELETE_CHUNK = 10_000


def pg_type(arrow_type: pa.DataType) -> str:
    """The PostgreSQL type a selected column is stored as."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    if pa.types.is_integer(arrow_type):
        return "bigint"
    if pa.types.is_floating(arrow_type):
        return "double precision"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    return "text"


def _copy_type(field: pa.Field) -> str:
    if field.name == "vector":
        return "vector"
    return {"double precision": "float8", "timestamptz": "timestamptz"}.get(pg_type(field.type),
                                                                             pg_type(field.type))


def _column_type(field: pa.Field) -> str:
    return f"vector({field.type.list_size}) NOT NULL" if field.name == "vector" else pg_type(field.type)


def _pg_name(field: pa.Field) -> str:
    return VECTOR_COLUMN if field.name == "vector" else field.name


class PgvectorStore:
    kind = "pgvector"

    def __init__(self, spec: PgvectorSinkSpec, where: str, secrets: tuple[str, ...] = ()):
        import psycopg

        self.spec, self.where, self.secrets = spec, where, secrets
        self.schema, self.name, self.stable = spec.schema_name, spec.table_name, spec.table
        try:
            self.con = psycopg.connect(spec.dsn, connect_timeout=10)
        except psycopg.Error as err:
            raise self._error("cannot connect to PostgreSQL", err) from None
        try:
            self._setup()
        except psycopg.Error as err:
            self.con.close()
            raise self._error("cannot prepare the pgvector extension, schema and state table", err) from None

    # --- names and plumbing -----------------------------------------------------------

    def _error(self, what: str, err: BaseException) -> SinkError:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return SinkError(redact(f"{self.where}: {what}: {first}", self.secrets))

    def _ident(self, name: str):
        from psycopg import sql

        return sql.Identifier(self.schema, name)

    @property
    def _state_table(self):
        return self._ident(f"{self.name}__jammi")

    def slot_for(self, key: str) -> str:
        return f"{self.name}__{key}"

    def _lock(self) -> None:
        self.con.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                         [f"jammi-sink:{self.stable}"])

    def _setup(self) -> None:
        from pgvector.psycopg import register_vector
        from psycopg import sql

        with self.con.transaction():
            self._lock()
            self.con.execute("CREATE EXTENSION IF NOT EXISTS vector")
            self.con.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            self.con.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (slot text PRIMARY KEY, jammi_table text NOT NULL, "
                "layout text NOT NULL, version integer NOT NULL, rows bigint NOT NULL, "
                "serving boolean NOT NULL, updated_at timestamptz NOT NULL)").format(self._state_table))
        register_vector(self.con)

    def close(self) -> None:
        self.con.close()

    # --- state --------------------------------------------------------------------------

    def _read_states(self) -> dict[str, SlotState]:
        from psycopg import sql

        cur = self.con.execute(sql.SQL("SELECT slot, jammi_table, layout, version, rows, serving FROM {}")
                               .format(self._state_table))
        return {r[0]: SlotState(*r) for r in cur.fetchall()}

    def states(self) -> dict[str, SlotState]:
        with self.con.transaction():
            return self._read_states()

    def serving(self) -> SlotState | None:
        return next((s for s in self.states().values() if s.serving), None)

    def _record(self, state: SlotState) -> None:
        from psycopg import sql

        self.con.execute(sql.SQL(
            "INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (slot) DO UPDATE SET "
            "jammi_table = EXCLUDED.jammi_table, layout = EXCLUDED.layout, version = EXCLUDED.version, "
            "rows = EXCLUDED.rows, serving = EXCLUDED.serving, updated_at = EXCLUDED.updated_at")
            .format(self._state_table),
            [state.slot, state.jammi_table, state.layout, state.version, state.rows, state.serving,
             datetime.now(UTC)])

    # --- rows ---------------------------------------------------------------------------

    def apply(self, slot: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch], deletes: list[str],
              expected: SlotState | None, state: SlotState, fresh: bool, index: bool) -> Applied:
        import psycopg
        from psycopg import sql

        table = self._ident(slot)
        try:
            with self.con.transaction():
                self._lock()
                found = self._read_states().get(slot)
                if found != expected:
                    raise SinkMoved(f"{self.where}: {self.schema}.{slot} changed since this run read it "
                                    f"(now {found}); nothing was applied; run again")
                if fresh:
                    self.con.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
                    columns: list[sql.Composable] = [
                        sql.SQL("{} {}").format(sql.Identifier(_pg_name(f)), sql.SQL(_column_type(f)))
                        for f in schema]
                    columns[0] = sql.SQL("_row_id text PRIMARY KEY")
                    self.con.execute(sql.SQL("CREATE TABLE {} ({})").format(table,
                                                                            sql.SQL(", ").join(columns)))
                    upserted = self._copy(table, schema, batches)
                    deleted = 0
                else:
                    upserted = self._upsert(table, schema, batches)
                    deleted = self._delete(table, deletes)
                if index:
                    self._index(table, slot)
                self._record(state)
        except psycopg.Error as err:
            raise self._error(f"writing {self.schema}.{slot} failed (nothing was applied)", err) from None
        return Applied(upserted, deleted)

    def _copy(self, table, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> int:
        from psycopg import sql

        names = sql.SQL(", ").join(sql.Identifier(_pg_name(f)) for f in schema)
        written = 0
        with self.con.cursor() as cur, cur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(table, names)) as copy:
            copy.set_types([_copy_type(f) for f in schema])
            for batch in batches:
                columns = []
                for f, col in zip(schema, batch.columns, strict=True):
                    if f.name == "vector":
                        flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
                        columns.append(list(flat.reshape(len(col), f.type.list_size)))
                    elif pg_type(f.type) == "text" and not pa.types.is_string(f.type):
                        columns.append(col.cast(pa.string()).to_pylist())
                    else:
                        columns.append(col.to_pylist())
                for row in zip(*columns, strict=True):
                    copy.write_row(row)
                written += batch.num_rows
        return written

    def _upsert(self, table, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> int:
        from psycopg import sql

        staged = sql.Identifier("_jammi_upsert")
        self.con.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DROP")
                         .format(staged, table))
        if not self._copy(staged, schema, batches):
            return 0
        names = [_pg_name(f) for f in schema]
        sets = sql.SQL(", ").join(sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n))
                                  for n in names[1:])
        cols = sql.SQL(", ").join(map(sql.Identifier, names))
        cur = self.con.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT (_row_id) "
                                       "DO UPDATE SET {}").format(table, cols, cols, staged, sets))
        return cur.rowcount

    def _delete(self, table, ids: list[str]) -> int:
        from psycopg import sql

        deleted = 0
        for start in range(0, len(ids), DELETE_CHUNK):
            cur = self.con.execute(sql.SQL("DELETE FROM {} WHERE _row_id = ANY(%s)").format(table),
                                   [ids[start:start + DELETE_CHUNK]])
            deleted += cur.rowcount
        return deleted

    def _index(self, table, slot: str) -> None:
        from psycopg import sql

        spec = self.spec.index
        if spec.method == "none":
            return
        digest = hashlib.sha256(f"{self.schema}.{slot}".encode()).hexdigest()[:12]
        name = sql.Identifier(f"jammi_{digest}_ann")
        options = (f"m = {spec.m}, ef_construction = {spec.ef_construction}" if spec.method == "hnsw"
                   else f"lists = {spec.lists}")
        self.con.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING {} ({} {}) WITH ({})").format(
            name, table, sql.SQL(spec.method), sql.Identifier(VECTOR_COLUMN), sql.SQL(_OPS[spec.metric]),
            sql.SQL(options)))

    def rows(self, slot: str) -> pa.Table:
        from psycopg import sql

        with self.con.transaction():
            cur = self.con.execute(sql.SQL("SELECT _row_id, _content_hash, {} FROM {}").format(
                sql.Identifier(COLUMNS_HASH), self._ident(slot)))
            found = cur.fetchall()
        names = ["_row_id", "_content_hash", COLUMNS_HASH]
        return pa.table({n: pa.array([r[i] for r in found], pa.string()) for i, n in enumerate(names)})

    # --- serving ------------------------------------------------------------------------

    def switch(self, slot: str, state: SlotState) -> None:
        import psycopg
        from psycopg import sql

        view = self._ident(self.name)
        try:
            with self.con.transaction():
                self._lock()
                kind = self.con.execute(
                    "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s", [self.schema, self.name]).fetchone()
                if kind is not None and kind[0] != "v":
                    raise SinkError(f"{self.where}: {self.stable} exists and is not a view; Jammi serves the "
                                    "sink as a view of that name over its own tables: rename or drop it, or "
                                    "name another table")
                select = sql.SQL("SELECT * FROM {}").format(self._ident(slot))
                try:
                    with self.con.transaction():  # a savepoint: another vector size needs a new view
                        self.con.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS {}").format(view, select))
                except psycopg.Error:
                    self.con.execute(sql.SQL("DROP VIEW {}").format(view))
                    self.con.execute(sql.SQL("CREATE VIEW {} AS {}").format(view, select))
                self.con.execute(sql.SQL("UPDATE {} SET serving = (slot = %s)").format(self._state_table),
                                 [slot])
                self._record(dataclasses.replace(state, serving=True, pending=False))
        except psycopg.Error as err:
            raise self._error(f"switching {self.stable} to {self.schema}.{slot} failed (it still serves "
                              "what it served)", err) from None

    def drop(self, slot: str) -> None:
        from psycopg import sql

        with self.con.transaction():
            self._lock()
            self.con.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._ident(slot)))
            self.con.execute(sql.SQL("DELETE FROM {} WHERE slot = %s").format(self._state_table), [slot])
