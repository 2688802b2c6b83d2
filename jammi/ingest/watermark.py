"""Incremental extraction of a PostgreSQL source that declares a `watermark` column, and the
state of that watermark, a shared file (`state/watermarks/<source>.json` under the artifact
directory or its object-store URL: jammi.shared).

A run reads only the rows whose watermark is past the **committed** position and merges them
into the previous raw frame: changed rows replace their old version, new rows are added, and
deleted keys leave (rows whose `deleted_at` is set, or, without `deleted_at`, keys of the
previous frame the source no longer has). The merged frame equals what a full extract gives.

The position an extract reaches is written as **pending**, with the run's id; only
`commit_watermark` (called once the whole run has succeeded) makes it the committed one. A
run that fails leaves the committed position where it was, so the next run reads the same rows
again; the key merge makes that repeat harmless.

Every query of one extract runs in one REPEATABLE READ READ ONLY transaction, so the position,
the changed rows and the key set are one snapshot of the source.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from jammi import store
from jammi.errors import SourceError
from jammi.ingest.extract import _typed_keys, check_columns, check_keys, storable
from jammi.redact import dsn_secrets, redact
from jammi.shared import read_json, shared_path, write_json, write_lock
from jammi.spec.project import Project, SourceSpec
from jammi.store import Location

STATE_DIR = ("state", "watermarks")
SUBQUERY = "_jammi_source"
LOCK_WAIT_S = 60.0


@dataclass(frozen=True)
class Position:
    """Where a source stands: its largest watermark and deleted_at (as PostgreSQL spells them,
    so they compare in the column's own type) and its row count (soft-deleted rows included).
    The count moves on a hard delete, which no watermark shows."""

    watermark: str | None
    deleted_at: str | None
    rows: int


@dataclass
class WatermarkExtract:
    rows: pd.DataFrame  # the whole source as a full extract gives it
    mode: str  # "incremental" or "full"
    reason: str  # why a full extract ("" when incremental)
    fetched: int  # rows read from PostgreSQL (changed and late rows; every row when full)
    deleted: int  # rows of the previous frame that left it
    position: Position  # the position this extract reached, now pending


# --- state ---------------------------------------------------------------------------------


def state_path(artifact_dir: Path, source: str) -> Location:
    """The source's watermark file (shared: jammi.shared), replaced whole on every change."""
    return shared_path(artifact_dir, *STATE_DIR, f"{source}.json")


def read_state(artifact_dir: Path, source: str) -> dict:
    """`{"committed": {...} | None, "pending": {...} | None}` of `source`."""
    return read_json(state_path(artifact_dir, source)) or {"committed": None, "pending": None}


def _update_state(artifact_dir: Path, source: str, change) -> dict:
    path = state_path(artifact_dir, source)
    if not store.is_url(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    with state_lock(artifact_dir, path, source):
        state = read_state(artifact_dir, source)
        change(state)
        write_json(path, state)
    return state


def state_lock(artifact_dir: Path, path: Location, source: str):
    """One writer of a source's watermark state at a time, across nodes for a state under an
    object-store URL (jammi.shared.write_lock; its errors name the state's file, named for the
    source)."""
    return write_lock(artifact_dir, path, f"{source}.lock", LOCK_WAIT_S)


def _position(record: dict | None) -> Position | None:
    if record is None:
        return None
    return Position(record["watermark"], record["deleted_at"], int(record["rows"]))


def committed_position(artifact_dir: Path, source: str, fingerprint: str | None = None) -> Position | None:
    """The committed position; None when there is none, or when it was reached under another
    definition of the source (`fingerprint`, when given, differs)."""
    committed = read_state(artifact_dir, source)["committed"]
    if committed is None or (fingerprint is not None and committed.get("fingerprint") != fingerprint):
        return None
    return _position(committed)


def pending_run(artifact_dir: Path, source: str) -> str | None:
    """The id of the run whose extract is pending (not yet committed), if any."""
    pending = read_state(artifact_dir, source)["pending"]
    return pending.get("run_id") if pending else None


def commit_watermark(artifact_dir: Path, source: str, run_id: str) -> bool:
    """Make the position run `run_id` extracted the committed one; call it once the whole run
    has succeeded. False (nothing changes) when the pending extract is not that run's."""
    done = []

    def change(state: dict) -> None:
        pending = state.get("pending")
        if pending and run_id and pending.get("run_id") == run_id:
            state["committed"] = {**pending, "committed_at": _now()}
            state["pending"] = None
            done.append(True)

    if not store.exists(state_path(artifact_dir, source)):
        return False
    _update_state(artifact_dir, source, change)
    return bool(done)


def commit_run(project: Project, run_id: str) -> list[str]:
    """Commit every watermark source that run `run_id` extracted; the sources committed."""
    return [name for name, spec in project.sources.items()
            if spec.watermark and commit_watermark(project.artifact_dir, name, run_id)]


def fingerprint(spec: SourceSpec) -> str:
    """What the committed position depends on: where the rows come from and how they are keyed
    and ordered. Another value means the previous frame cannot be merged into."""
    parts = [redact(spec.dsn or "", dsn_secrets(spec.dsn)), spec.table, spec.query, spec.key,
             spec.watermark, spec.deleted_at]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- PostgreSQL ------------------------------------------------------------------------------


def _relation(spec: SourceSpec):
    from psycopg import sql

    if spec.table:
        return sql.Identifier(*spec.table.split("."))
    return sql.SQL("({}) AS {}").format(sql.SQL(spec.query.strip().rstrip(";")), sql.Identifier(SUBQUERY))


def _connect(spec: SourceSpec):
    import psycopg

    conn = psycopg.connect(spec.dsn, connect_timeout=10)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def _source_error(project: Project, name: str, spec: SourceSpec, err: Exception) -> SourceError:
    what = f"table {spec.table!r}" if spec.table else "query"
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    message = f"source {name!r}: PostgreSQL {what} failed: {detail}"
    return SourceError(redact(message, [*project.secrets, *dsn_secrets(spec.dsn)]))


def _probe(cur, spec: SourceSpec) -> Position:
    from psycopg import sql

    deleted = (sql.SQL("max({})::text").format(sql.Identifier(spec.deleted_at)) if spec.deleted_at
               else sql.SQL("NULL::text"))
    cur.execute(sql.SQL("SELECT max({})::text, {}, count(*) FROM {}").format(
        sql.Identifier(spec.watermark), deleted, _relation(spec)))
    watermark, deleted_at, rows = cur.fetchone()
    return Position(watermark, deleted_at, int(rows))


def probe(project: Project, name: str) -> Position:
    """The source's position now: one aggregate query, cheap enough for a sensor tick."""
    spec = project.sources[name]
    import psycopg

    try:
        with _connect(spec) as conn, conn.cursor() as cur:
            return _probe(cur, spec)
    except psycopg.Error as err:
        raise _source_error(project, name, spec, err) from None


def _rows(cur, query) -> pd.DataFrame:
    cur.execute(query)
    return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def _changed_rows(cur, spec: SourceSpec, since: Position) -> pd.DataFrame:
    """Rows whose watermark (or deleted_at) is past `since`, in watermark order."""
    from psycopg import sql

    wm, rel = sql.Identifier(spec.watermark), _relation(spec)
    past = sql.SQL("{} > {}").format(wm, sql.Literal(since.watermark)) if since.watermark else sql.SQL("TRUE")
    if spec.deleted_at:
        dl = sql.Identifier(spec.deleted_at)
        gone = (sql.SQL("{} > {}").format(dl, sql.Literal(since.deleted_at)) if since.deleted_at
                else sql.SQL("{} IS NOT NULL").format(dl))
        past = sql.SQL("({}) OR ({})").format(past, gone)
    return _rows(cur, sql.SQL("SELECT * FROM {} WHERE {} ORDER BY {}").format(rel, past, wm))


def _all_rows(cur, spec: SourceSpec) -> pd.DataFrame:
    from psycopg import sql

    live = (sql.SQL(" WHERE {} IS NULL").format(sql.Identifier(spec.deleted_at)) if spec.deleted_at
            else sql.SQL(""))
    return _rows(cur, sql.SQL("SELECT * FROM {}{}").format(_relation(spec), live))


def _key_set(cur, spec: SourceSpec) -> pd.DataFrame:
    """Every key of the source, as fetched (`k`) and as PostgreSQL spells it (`text`)."""
    from psycopg import sql

    key = sql.Identifier(spec.key)
    return _rows(cur, sql.SQL("SELECT {} AS k, {}::text AS text FROM {}").format(key, key, _relation(spec)))


def _rows_by_key(cur, spec: SourceSpec, texts: list[str]) -> pd.DataFrame:
    from psycopg import sql

    return _rows(cur, sql.SQL("SELECT * FROM {} WHERE {}::text = ANY({})").format(
        _relation(spec), sql.Identifier(spec.key), sql.Literal(texts)))


def _aligned(delta: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """`delta` in the previous frame's column types where they differ only in spelling (a time
    zone read back from Parquet, a batch with no value in a column), so that the merged
    columns keep their types instead of becoming objects."""
    is_time = pd.api.types.is_datetime64_any_dtype
    out = delta.copy()
    for col in delta.columns:
        want, have = previous[col].dtype, delta[col].dtype
        if want == have or pd.api.types.is_object_dtype(want):
            continue
        if (is_time(want) and is_time(have)) or delta[col].isna().all():
            try:
                out[col] = delta[col].astype(want)
            except (TypeError, ValueError):
                pass
    return out


def extract_incremental(project: Project, name: str, previous: pd.DataFrame | None,
                        run_id: str | None = None, full: bool = False) -> WatermarkExtract:
    """The whole of source `name`, reading from PostgreSQL only the rows past its committed
    watermark and merging them into `previous` (its last raw frame); a full extract when
    `full`, when there is no previous frame or committed position, or when the source's
    definition or columns changed. The position reached is recorded as pending for `run_id`."""
    import psycopg

    spec = project.sources[name]
    fp = fingerprint(spec)
    since = committed_position(project.artifact_dir, name, fp)
    reason = ("full extract requested" if full else "no previous raw frame" if previous is None
              else "no committed watermark for this source definition" if since is None else "")
    deleted = 0
    try:
        with _connect(spec) as conn, conn.cursor() as cur:
            position = _probe(cur, spec)
            if not reason:
                delta = _changed_rows(cur, spec, since)
                if list(delta.columns) != list(previous.columns):
                    reason = "the source's columns changed"
            if not reason:
                frame, fetched, deleted = _merge(cur, spec, previous, delta)
            else:
                frame = _all_rows(cur, spec)
                fetched = len(frame)
    except psycopg.Error as err:
        raise _source_error(project, name, spec, err) from None
    try:
        check_columns(name, spec, frame)
        check_keys(name, spec.key, frame, spec.columns[spec.key].type)
    except SourceError as err:
        raise type(err)(redact(str(err), [*project.secrets, *dsn_secrets(spec.dsn)])) from None
    frame = storable(frame, set(spec.columns) if spec.schema_ is None else None).reset_index(drop=True)
    result = WatermarkExtract(frame, "full" if reason else "incremental", reason, fetched, deleted,
                              position)
    _record_pending(project.artifact_dir, name, fp, result, run_id)
    return result


def _merge(cur, spec: SourceSpec, previous: pd.DataFrame,
           delta: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """(merged frame, rows fetched, rows deleted): `previous` without deleted keys, with the
    changed rows in place of their old versions and the new rows added."""
    key_type = spec.columns[spec.key].type
    prev_keys = _typed_keys(previous[spec.key], key_type)
    fetched = len(delta)
    if spec.deleted_at:
        gone = delta[spec.deleted_at].notna()
        removed = set(_typed_keys(delta.loc[gone, spec.key], key_type))
        delta = delta[~gone]
    else:
        source_keys = _key_set(cur, spec)
        typed = _typed_keys(source_keys["k"], key_type)
        removed = set(prev_keys) - set(typed)
        # rows not in the previous frame whose watermark is not past it: committed late, or
        # with a null watermark; a full extract has them, so the merge must too
        known = set(prev_keys) | set(_typed_keys(delta[spec.key], key_type))
        late = source_keys.loc[~typed.isin(known), "text"].tolist()
        if late:
            late_rows = _rows_by_key(cur, spec, late)
            fetched += len(late_rows)
            delta = pd.concat([delta, late_rows], ignore_index=True) if len(delta) else late_rows
    replaced = prev_keys.isin(removed | set(_typed_keys(delta[spec.key], key_type)))
    deleted = int(prev_keys.isin(removed).sum())
    kept = previous[~replaced]
    if not len(delta):
        return kept, fetched, deleted
    merged = pd.concat([kept, _aligned(delta, previous)], ignore_index=True) if len(kept) else delta
    return merged, fetched, deleted


def _record_pending(artifact_dir: Path, name: str, fp: str, result: WatermarkExtract,
                    run_id: str | None) -> None:
    pending = {**asdict(result.position), "run_id": run_id, "fingerprint": fp,
               "extracted_at": _now(), "mode": result.mode, "reason": result.reason,
               "rows_fetched": result.fetched, "rows_deleted": result.deleted}

    def change(state: dict) -> None:
        state["pending"] = pending

    _update_state(artifact_dir, name, change)
