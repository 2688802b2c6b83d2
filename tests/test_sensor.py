"""File sensors (issue 10, item 5a): the first tick records a baseline and requests nothing; a
file still being written waits; an unpartitioned source gets one run per change, a `{date}` path
the changed date's partition, `dynamic: files` a partition per new file; the cursor moves past
a change only when its run succeeded, and a failed run is requested again with backoff."""

from __future__ import annotations

import json
import os
import uuid

import dagster as dg
import pytest

from jammi_assets.definitions import build_definitions
from sensors import file_state
from sensors.file_state import BACKOFF_BASE_S, LAUNCH_GRACE_S, Group, Request, RunState
from sensors.source_files import REQUEST_TAG, WILL_RETRY_TAG, default_status, evaluate, sensor_name
from tests.conftest import PRODUCT_COLUMNS, write_project

T0 = 1_800_000_000.0

# -- the decisions, as plain functions --------------------------------------------------------


def no_runs(_key: str) -> RunState:
    return RunState.MISSING


def test_first_tick_is_a_baseline():
    state, decision = file_state.tick("s", None, {"": "aaa"}, no_runs, T0)
    assert decision.baseline and decision.requests == []
    assert state[""] == Group(seen="aaa", done="aaa")


def test_a_change_waits_until_two_ticks_agree():
    state, _ = file_state.tick("s", None, {"": "aaa"}, no_runs, T0)
    state, decision = file_state.tick("s", state, {"": "bbb"}, no_runs, T0 + 30)
    assert decision.requests == [] and decision.waiting == ["files: still changing"]
    state, decision = file_state.tick("s", state, {"": "ccc"}, no_runs, T0 + 60)  # still growing
    assert decision.requests == []
    state, decision = file_state.tick("s", state, {"": "ccc"}, no_runs, T0 + 90)
    assert decision.requests == [("", Request("s:*:ccc:1", "ccc", 1, T0 + 90))]
    assert state[""].done == "aaa"  # not before the run succeeds


def requested(fp: str = "ccc", at: float = T0) -> dict[str, Group]:
    return {"": Group(seen=fp, done="aaa", request=Request(f"s:*:{fp}:1", fp, 1, at))}


def test_success_moves_the_cursor_and_nothing_more_is_requested():
    state, decision = file_state.tick("s", requested(), {"": "ccc"}, lambda _k: RunState.SUCCEEDED, T0 + 30)
    assert state[""].done == "ccc" and state[""].request is None and decision.requests == []


def test_a_run_in_progress_is_waited_for():
    state, decision = file_state.tick("s", requested(), {"": "ccc"}, lambda _k: RunState.RUNNING, T0 + 30)
    assert state[""].request is not None and decision.requests == []
    assert decision.waiting == ["files: waiting for run s:*:ccc:1"]


def test_failure_requests_again_with_backoff_and_a_new_run_key():
    failed = lambda _k: RunState.FAILED  # noqa: E731
    state, decision = file_state.tick("s", requested(), {"": "ccc"}, failed, T0 + 30)
    assert decision.requests == [] and state[""].failures == 1
    assert state[""].retry_at == T0 + 30 + BACKOFF_BASE_S and state[""].done == "aaa"
    state, decision = file_state.tick("s", state, {"": "ccc"}, no_runs, T0 + 60)
    assert decision.requests == [] and "1 failed run(s)" in decision.waiting[0]
    state, decision = file_state.tick("s", state, {"": "ccc"}, no_runs, T0 + 30 + BACKOFF_BASE_S)
    ((_, again),) = decision.requests
    assert again.run_key == "s:*:ccc:2" and again.attempt == 2
    state, _ = file_state.tick("s", state, {"": "ccc"}, failed, T0 + 200)
    assert state[""].failures == 2 and state[""].retry_at == T0 + 200 + 2 * BACKOFF_BASE_S


def test_new_content_after_a_failure_is_requested_at_once():
    state, _ = file_state.tick("s", requested(), {"": "ccc"}, lambda _k: RunState.FAILED, T0 + 30)
    state, _ = file_state.tick("s", state, {"": "ddd"}, no_runs, T0 + 60)
    state, decision = file_state.tick("s", state, {"": "ddd"}, no_runs, T0 + 90)
    ((_, request),) = decision.requests
    assert request.run_key == "s:*:ddd:1" and state[""].failures == 0


def test_a_run_never_launched_counts_as_failed_after_the_grace():
    state, _ = file_state.tick("s", requested(), {"": "ccc"}, no_runs, T0 + LAUNCH_GRACE_S - 1)
    assert state[""].request is not None
    state, _ = file_state.tick("s", state, {"": "ccc"}, no_runs, T0 + LAUNCH_GRACE_S)
    assert state[""].request is None and state[""].failures == 1


def test_state_survives_the_cursor():
    state = requested()
    assert file_state.load_state({"s": file_state.dump_state(state)}, "s") == state
    assert file_state.load_state({}, "s") is None


# -- the sensors, on files and an instance ----------------------------------------------------


def products_project(tmp_path, products_csv, **extra):
    return write_project(tmp_path, {"products": {"kind": "csv", "path": "data/products.csv",
                                                 "key": "id", "columns": PRODUCT_COLUMNS, **extra}})


def sensor_tick(instance, project, source: str, cursor: str | None, now: float):
    return evaluate(dg.build_sensor_context(cursor=cursor, instance=instance), project, source, now=now)


def touch(path, content: str, mtime_s: int) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(content)
    os.utime(path, (mtime_s, mtime_s))


def add_run(instance, run_key: str, status: dg.DagsterRunStatus, **tags) -> None:
    instance.add_run(dg.DagsterRun(job_name="products_job", run_id=str(uuid.uuid4()), status=status,
                                   tags={REQUEST_TAG: run_key, **tags}))


def test_unpartitioned_source_runs_once_per_change_and_only_past_success(tmp_path, products_csv):
    project = products_project(tmp_path, products_csv, sensor=True)
    with dg.instance_for_test() as instance:
        first = sensor_tick(instance, project, "products", None, T0)
        assert first.run_requests == [] and "baseline" in first.skip_reason.skip_message
        assert sensor_tick(instance, project, "products", first.cursor, T0 + 30).run_requests == []

        touch(products_csv, "7,Trail socks,Merino socks,9\n", 2_000_000_000)
        writing = sensor_tick(instance, project, "products", first.cursor, T0 + 60)
        assert writing.run_requests == [] and "still changing" in writing.skip_reason.skip_message
        stable = sensor_tick(instance, project, "products", writing.cursor, T0 + 90)
        (request,) = stable.run_requests
        assert request.partition_key is None
        assert request.tags["jammi/source"] == "products" and request.tags[REQUEST_TAG] == request.run_key
        assert request.run_key.startswith("products:*:") and request.run_key.endswith(":1")

        add_run(instance, request.run_key, dg.DagsterRunStatus.FAILURE)
        failed = sensor_tick(instance, project, "products", stable.cursor, T0 + 120)
        assert failed.run_requests == []
        assert json.loads(failed.cursor)["products"][""]["failures"] == 1
        retried = sensor_tick(instance, project, "products", failed.cursor, T0 + 120 + BACKOFF_BASE_S)
        (again,) = retried.run_requests
        assert again.run_key == request.run_key[:-1] + "2"

        add_run(instance, again.run_key, dg.DagsterRunStatus.FAILURE, **{WILL_RETRY_TAG: "true"})
        waiting = sensor_tick(instance, project, "products", retried.cursor, T0 + 400)
        assert waiting.run_requests == [] and json.loads(waiting.cursor)["products"][""]["request"]
        add_run(instance, again.run_key, dg.DagsterRunStatus.SUCCESS)  # Dagster's retry succeeded
        done = sensor_tick(instance, project, "products", waiting.cursor, T0 + 430)
        assert done.run_requests == []
        state = json.loads(done.cursor)["products"][""]
        assert state["done"] == state["seen"] and state["failures"] == 0
        assert sensor_tick(instance, project, "products", done.cursor, T0 + 460).run_requests == []


def test_date_path_requests_the_partition_of_a_new_file(tmp_path):
    folder = tmp_path / "data" / "reviews"
    folder.mkdir(parents=True)
    (folder / "2026-11-01.jsonl").write_text('{"id": "a", "text": "hi"}\n')
    (folder / "notes.jsonl").write_text('{"id": "z", "text": "not a date"}\n')
    project = write_project(tmp_path, {"reviews": {
        "kind": "jsonl", "path": "data/reviews/{date}.jsonl", "key": "id",
        "columns": {"id": "str", "text": "str"},
        "partitions": {"by": "{date}", "granularity": "day", "start": "2026-11-01"}}})
    with dg.instance_for_test() as instance:
        first = sensor_tick(instance, project, "reviews", None, T0)
        assert list(json.loads(first.cursor)["reviews"]) == ["2026-11-01"]
        (folder / "2026-11-02.jsonl").write_text('{"id": "b", "text": "new day"}\n')
        seen = sensor_tick(instance, project, "reviews", first.cursor, T0 + 30)
        assert seen.run_requests == []
        (request,) = sensor_tick(instance, project, "reviews", seen.cursor, T0 + 60).run_requests
    assert request.partition_key == "2026-11-02" and request.tags["jammi/partition"] == "2026-11-02"


def test_dynamic_files_become_partitions_and_each_new_one_a_run(tmp_path):
    folder = tmp_path / "data" / "drops"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text("id,text\n1,x\n")
    project = write_project(tmp_path, {"drops": {
        "kind": "csv", "path": "data/drops/*.csv", "key": "id", "columns": {"id": "int", "text": "str"},
        "partitions": {"dynamic": "files"}}})
    with dg.instance_for_test() as instance:
        first = sensor_tick(instance, project, "drops", None, T0)
        ((added),) = first.dynamic_partitions_requests
        assert (added.partitions_def_name, list(added.partition_keys)) == ("drops_files", ["a.csv"])
        assert first.run_requests == []
        instance.add_dynamic_partitions("drops_files", ["a.csv"])  # what the daemon does

        (folder / "b.csv").write_text("id,text\n2,y\n")
        landed = sensor_tick(instance, project, "drops", first.cursor, T0 + 30)
        assert [list(r.partition_keys) for r in landed.dynamic_partitions_requests] == [["b.csv"]]
        assert landed.run_requests == []
        instance.add_dynamic_partitions("drops_files", ["b.csv"])
        stable = sensor_tick(instance, project, "drops", landed.cursor, T0 + 60)
    (request,) = stable.run_requests
    assert request.partition_key == "b.csv" and not stable.dynamic_partitions_requests


@pytest.mark.parametrize("extra, expected", [
    ({}, dg.DefaultSensorStatus.STOPPED),
    ({"sensor": True}, dg.DefaultSensorStatus.RUNNING),
    ({"refresh": {"cron": "0 * * * *"}}, dg.DefaultSensorStatus.RUNNING),
    ({"partitions": {"dynamic": "files"}}, dg.DefaultSensorStatus.RUNNING),
    ({"sensor": False, "refresh": {"cron": "0 * * * *"}}, None),
])
def test_sensor_defaults_follow_declared_automation(tmp_path, products_csv, extra, expected):
    project = products_project(tmp_path, products_csv, **extra)
    assert default_status(project.sources["products"]) == expected
    sensors = {s.name: s for s in build_definitions(project).sensors}
    if expected is None:
        assert sensor_name("products") not in sensors
    else:
        assert sensors[sensor_name("products")].default_status == expected
        assert sensors[sensor_name("products")].job_name == "products_job"
