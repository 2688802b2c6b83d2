"""Incremental PostgreSQL extraction by watermark, its commit only after a successful run, and
the watermark sensors, against the real PostgreSQL at 127.0.0.1:5432 (database `test`)."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from jammi import keys
from jammi.app.sources import extract_raw, extract_watermarked
from jammi.ingest.extract import extract
from jammi.ingest.watermark import commit_watermark, committed_position, read_state
from jammi.shared import frame_path
from jammi.storage import write_parquet_atomic
from jammi_assets.definitions import build_assets, build_resources
from sensors import postgres_watermark
from sensors.postgres_watermark import (
    ATTEMPT_TAG,
    COMMIT_SENSOR,
    REQUEST_TAG,
    build_watermark_sensors,
    sensor_name,
)
from tests.conftest import PG_DSN, materialize, pg_connect, write_project

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
COLUMNS = {"id": {"type": "int", "nullable": False}, "title": "str", "body": "str",
           "updated_at": "datetime", "deleted_at": "datetime"}
TITLES = ["Red running shoes", "Espresso machine", "Cast iron skillet", "Yoga mat",
          "Noise cancelling headphones", "Trail socks", "Rain jacket", "Camping stove"]


class Table:
    """A uniquely named table of products whose rows carry `updated_at` (a fake clock that
    only moves forward) and `deleted_at`."""

    def __init__(self, conn, name: str):
        self.conn, self.name, self.clock = conn, name, T0

    def tick(self) -> datetime:
        self.clock += timedelta(minutes=1)
        return self.clock

    def insert(self, row_id: int, title: str, updated_at: datetime | None = None) -> None:
        self.conn.execute(f'INSERT INTO "{self.name}" (id, title, body, updated_at) VALUES (%s, %s, %s, %s)',
                          (row_id, title, f"About {title.lower()}", updated_at or self.tick()))

    def update(self, row_id: int, title: str) -> None:
        self.conn.execute(f'UPDATE "{self.name}" SET title = %s, updated_at = %s WHERE id = %s',
                          (title, self.tick(), row_id))

    def delete(self, row_id: int) -> None:
        self.conn.execute(f'DELETE FROM "{self.name}" WHERE id = %s', (row_id,))

    def soft_delete(self, row_id: int) -> None:  # deleted_at only: updated_at stays
        self.conn.execute(f'UPDATE "{self.name}" SET deleted_at = %s WHERE id = %s', (self.tick(), row_id))


@pytest.fixture
def table():
    conn = pg_connect()
    name = f"jammi_wm_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE TABLE "{name}" (id integer PRIMARY KEY, title text, body text, '
                 "updated_at timestamptz NOT NULL, deleted_at timestamptz)")
    t = Table(conn, name)
    for i, title in enumerate(TITLES, start=1):
        t.insert(i, title)
    try:
        yield t
    finally:
        conn.execute(f'DROP TABLE IF EXISTS "{name}"')
        conn.close()


def project_for(tmp_path, source: dict, pipelines: dict | None = None):
    return write_project(tmp_path, {"items": {"kind": "postgres", "dsn": PG_DSN, "key": "id",
                                              "columns": COLUMNS, "watermark": "updated_at", **source}},
                         pipelines)


def run_extract(project, run_id: str, commit: bool = True, full: bool = False):
    """What a run does: extract, store the raw frame (as the IO manager does), and commit the
    watermark when the run succeeds."""
    got = extract_watermarked(project, "items", run_id, full=full)
    write_parquet_atomic(got.rows, frame_path(project.artifact_dir, keys.raw("items")))
    if commit:
        assert commit_watermark(project.artifact_dir, "items", run_id)
    return got


def stored(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as the raw asset's Parquet file holds it, in key order."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return pd.read_parquet(buffer).sort_values("id").reset_index(drop=True)


def assert_equals_full_extract(project, frame: pd.DataFrame) -> None:
    """`frame` is what the plain, non-incremental extract gives; for a source declaring
    `deleted_at`, what a full watermark extract gives (its live rows), in a fresh artifact dir."""
    if project.sources["items"].deleted_at:
        fresh = write_project(project.root / "fresh", {"items": project.sources["items"].model_dump(
            by_alias=True, exclude_none=True)})
        full = extract_watermarked(fresh, "items", full=True).rows
        assert full["deleted_at"].isna().all()
    else:
        full = extract(project, "items")
    pd.testing.assert_frame_equal(stored(frame), stored(full))


def test_first_extract_reads_everything_and_commits_only_on_success(tmp_path, table):
    project = project_for(tmp_path, {"table": table.name})
    first = run_extract(project, "run-1", commit=False)
    assert (first.mode, first.fetched, len(first.rows)) == ("full", 8, 8)
    state = read_state(project.artifact_dir, "items")
    assert state["committed"] is None
    assert state["pending"]["run_id"] == "run-1"
    assert state["pending"]["watermark"] == "2026-11-01 09:08:00+00"
    assert not commit_watermark(project.artifact_dir, "items", "another-run")
    assert commit_watermark(project.artifact_dir, "items", "run-1")
    assert committed_position(project.artifact_dir, "items").watermark == "2026-11-01 09:08:00+00"
    assert committed_position(project.artifact_dir, "items").rows == 8


def test_updates_inserts_and_hard_deletes_are_read_incrementally(tmp_path, table):
    project = project_for(tmp_path, {"table": table.name})
    run_extract(project, "run-1")
    table.update(2, "Espresso machine, 2026 model")
    table.update(5, "Headphones (refurbished)")
    table.insert(9, "Hiking poles")
    table.delete(3)

    second = run_extract(project, "run-2")
    assert (second.mode, second.fetched, second.deleted) == ("incremental", 3, 1)
    assert sorted(second.rows["id"]) == [1, 2, 4, 5, 6, 7, 8, 9]
    assert second.rows.set_index("id").loc[2, "title"] == "Espresso machine, 2026 model"
    assert_equals_full_extract(project, second.rows)

    quiet = run_extract(project, "run-3")
    assert (quiet.mode, quiet.fetched, quiet.deleted) == ("incremental", 0, 0)
    assert_equals_full_extract(project, quiet.rows)


def test_a_row_committed_late_with_an_old_watermark_is_found_by_its_key(tmp_path, table):
    project = project_for(tmp_path, {"table": table.name})
    run_extract(project, "run-1")
    table.insert(10, "Late arrival", updated_at=T0)  # older than the committed watermark
    got = run_extract(project, "run-2")
    assert (got.mode, got.fetched) == ("incremental", 1)
    assert_equals_full_extract(project, got.rows)


def test_soft_deletes_leave_the_frame_when_deleted_at_is_declared(tmp_path, table):
    project = project_for(tmp_path, {"table": table.name, "deleted_at": "deleted_at"})
    table.soft_delete(8)
    first = run_extract(project, "run-1")
    assert 8 not in set(first.rows["id"])
    table.soft_delete(4)
    table.update(1, "Red running shoes, wide fit")

    got = run_extract(project, "run-2")
    assert (got.mode, got.fetched, got.deleted) == ("incremental", 2, 1)
    assert sorted(got.rows["id"]) == [1, 2, 3, 5, 6, 7]
    assert_equals_full_extract(project, got.rows)


def test_a_query_source_is_wrapped_as_a_subquery(tmp_path, table):
    # a `%` in the query must not be read as a parameter placeholder
    query = f"SELECT * FROM \"{table.name}\" WHERE title NOT LIKE 'zz%'"
    project = project_for(tmp_path, {"query": query})
    run_extract(project, "run-1")
    table.update(7, "Rain jacket, hooded")
    got = run_extract(project, "run-2")
    assert (got.mode, got.fetched) == ("incremental", 1)
    assert_equals_full_extract(project, got.rows)


def test_a_failed_run_leaves_the_watermark_and_its_rows_are_read_again(tmp_path, table):
    project = project_for(tmp_path, {"table": table.name})
    run_extract(project, "run-1")
    before = committed_position(project.artifact_dir, "items")
    table.update(6, "Trail socks, merino")
    table.insert(11, "Head torch")

    failed = run_extract(project, "run-2", commit=False)  # the run fails after its extract
    assert committed_position(project.artifact_dir, "items") == before
    retried = run_extract(project, "run-3")
    assert (failed.fetched, retried.fetched) == (2, 2)
    assert sorted(retried.rows["id"]) == sorted(failed.rows["id"]) == [*range(1, 9), 11]
    assert_equals_full_extract(project, retried.rows)
    assert committed_position(project.artifact_dir, "items").watermark == "2026-11-01 09:10:00+00"
    assert not commit_watermark(project.artifact_dir, "items", "run-2")  # too late: not pending


def test_full_or_a_missing_raw_frame_extracts_everything(tmp_path, table):
    project = project_for(tmp_path, {"table": table.name})
    run_extract(project, "run-1")
    assert run_extract(project, "run-2", full=True).mode == "full"
    frame_path(project.artifact_dir, keys.raw("items")).unlink()
    got = run_extract(project, "run-3")
    assert (got.mode, got.fetched, got.reason) == ("full", 8, "no previous raw frame")


def test_a_changed_source_definition_extracts_everything(tmp_path, table):
    project = project_for(tmp_path, {"table": table.name})
    run_extract(project, "run-1")
    moved = project_for(tmp_path, {"table": f"public.{table.name}"})
    assert run_extract(moved, "run-2").mode == "full"


# --- sensors ---------------------------------------------------------------------------------


def _sensor(project):
    sensors = {s.name: s for s in build_watermark_sensors(project)}
    return sensors[sensor_name("items")]


def _tick(project, instance, cursor):
    return _sensor(project)(dg.build_sensor_context(instance=instance, cursor=cursor))


def _run(instance, tags: dict, project=None, fail: bool = False) -> str:
    """A run carrying `tags` that (like the source's bronze step) extracts the source, then
    fails when asked to."""

    @dg.asset(name="watermark_probe_step")
    def _step(context):
        if project is not None:
            extract_raw(project, "items", run_id=context.run_id)
        if fail:
            raise RuntimeError("simulated failure after the extract")

    result = dg.materialize([_step], instance=instance, tags=tags, raise_on_error=False)
    assert result.success is not fail
    return result.run_id


def test_sensors_are_built_per_watermark_source(tmp_path, table):
    project = project_for(tmp_path, {"table": table.name})
    built = build_watermark_sensors(project)
    assert [s.name for s in built] == [sensor_name("items"), COMMIT_SENSOR]
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in built)
    off = project_for(tmp_path, {"table": table.name, "sensor": False})
    assert [s.name for s in build_watermark_sensors(off)] == [COMMIT_SENSOR]
    dg.Definitions.validate_loadable(dg.Definitions(assets=build_assets(project), sensors=built,
                                                 resources=build_resources(project)))


@pytest.mark.slow
def test_sensor_requests_new_work_and_retries_failed_runs_with_backoff(tmp_path, table, monkeypatch):
    project = project_for(tmp_path, {"table": table.name})
    clock = [1_000_000.0]
    monkeypatch.setattr(postgres_watermark, "now", lambda: clock[0])
    instance = dg.DagsterInstance.ephemeral()

    first = _tick(project, instance, None)  # nothing committed yet
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.tags["jammi/source"] == "items" and request.tags[ATTEMPT_TAG] == "1"
    assert request.tags[REQUEST_TAG] == request.run_key

    _run(instance, request.tags, project, fail=True)
    clock[0] += 60
    failed = _tick(project, instance, first.cursor)
    assert failed.run_requests == [] and "next request in 60s" in failed.skip_reason.skip_message
    assert committed_position(project.artifact_dir, "items") is None
    clock[0] += 30
    waiting = _tick(project, instance, failed.cursor)
    assert waiting.run_requests == []

    clock[0] += 31  # past the backoff
    again = _tick(project, instance, waiting.cursor)
    assert len(again.run_requests) == 1
    retry = again.run_requests[0]
    assert retry.tags[ATTEMPT_TAG] == "2" and retry.run_key != request.run_key

    _run(instance, retry.tags, project)  # succeeds; the tick commits its watermark
    clock[0] += 60
    quiet = _tick(project, instance, again.cursor)
    assert quiet.run_requests == []
    assert committed_position(project.artifact_dir, "items").rows == 8
    assert _tick(project, instance, quiet.cursor).run_requests == []  # no change, no request

    table.insert(12, "Water bottle")
    clock[0] += 60
    new_rows = _tick(project, instance, quiet.cursor)
    assert len(new_rows.run_requests) == 1 and new_rows.run_requests[0].tags[ATTEMPT_TAG] == "1"

    _run(instance, new_rows.run_requests[0].tags, project, fail=True)
    clock[0] += 60
    second_failure = _tick(project, instance, new_rows.cursor)
    assert "next request in 60s" in second_failure.skip_reason.skip_message
    _run(instance, {}, project)  # a UI run meanwhile extracts and succeeds: no more backoff
    table.delete(1)  # a hard delete: only the count shows it
    clock[0] += 1
    after_delete = _tick(project, instance, second_failure.cursor)
    assert committed_position(project.artifact_dir, "items").rows == 9
    assert len(after_delete.run_requests) == 1 and after_delete.run_requests[0].tags[ATTEMPT_TAG] == "1"


def test_a_requested_run_that_never_starts_counts_as_failed(tmp_path, table, monkeypatch):
    project = project_for(tmp_path, {"table": table.name})
    clock = [1_000_000.0]
    monkeypatch.setattr(postgres_watermark, "now", lambda: clock[0])
    instance = dg.DagsterInstance.ephemeral()
    first = _tick(project, instance, None)
    clock[0] += 60
    assert "waiting for requested run" in _tick(project, instance, first.cursor).skip_reason.skip_message
    clock[0] += postgres_watermark.LAUNCH_GRACE_S
    lost = _tick(project, instance, first.cursor)
    assert lost.run_requests == [] and "next request in 60s" in lost.skip_reason.skip_message


def test_backoff_doubles_up_to_an_hour():
    assert [postgres_watermark.backoff_s(n) for n in (1, 2, 3, 7, 20)] == [60, 120, 240, 3600, 3600]


@pytest.mark.slow
def test_commit_sensor_commits_the_run_that_extracted(tmp_path, table):
    project = project_for(tmp_path, {"table": table.name})
    instance = dg.DagsterInstance.ephemeral()
    run_id = _run(instance, {}, project)
    commit = {s.name: s for s in build_watermark_sensors(project)}[COMMIT_SENSOR]
    run = instance.get_run_by_id(run_id)
    success = next(e for e in instance.all_logs(run_id) if e.dagster_event and
                   e.dagster_event.event_type == dg.DagsterEventType.RUN_SUCCESS).dagster_event
    commit(dg.build_run_status_sensor_context(sensor_name=COMMIT_SENSOR, dagster_event=success,
                                              dagster_instance=instance, dagster_run=run))
    assert committed_position(project.artifact_dir, "items").rows == 8
    assert read_state(project.artifact_dir, "items")["committed"]["run_id"] == run_id


# --- end to end ------------------------------------------------------------------------------


def _commit_after(project, result) -> None:
    """What the daemon does after a successful run: the commit sensor's tick."""
    commit = {s.name: s for s in build_watermark_sensors(project)}[COMMIT_SENSOR]
    commit(dg.build_run_status_sensor_context(
        sensor_name=COMMIT_SENSOR, dagster_event=result.get_run_success_event(),
        dagster_instance=dg.DagsterInstance.ephemeral(), dagster_run=result.dagster_run))


def _rows_encoded(result, pipeline: str) -> int:
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key.to_user_string() == keys.embeddings(pipeline):
            return mat.metadata["rows_encoded"].value
    raise AssertionError(f"no materialization of {keys.embeddings(pipeline)}")


@pytest.mark.slow
def test_second_materialization_reads_and_encodes_only_the_changes(tmp_path, table):
    project = project_for(tmp_path, {"table": table.name},
                          {"items": {"source": "items", "text_columns": ["title", "body"]}})
    first = materialize(project)
    assert first.success
    assert _rows_encoded(first, "items") == 8
    _commit_after(project, first)
    assert committed_position(project.artifact_dir, "items").rows == 8

    table.update(2, "Espresso machine, 2026 model")
    table.update(5, "Headphones (refurbished)")
    table.insert(9, "Hiking poles")
    table.delete(3)
    second = materialize(project)
    assert second.success
    pending = read_state(project.artifact_dir, "items")["pending"]
    assert (pending["mode"], pending["rows_fetched"], pending["rows_deleted"]) == ("incremental", 3, 1)
    assert _rows_encoded(second, "items") == 3  # two changed rows and the new one
    raw = pd.read_parquet(frame_path(project.artifact_dir, keys.raw("items")))
    assert_equals_full_extract(project, raw)
