"""Jobs, schedules and freshness policies made from jammi.yaml (issue 10, items 1, 4): one job
per source carrying its partitions, `<name>_refresh` schedules that run the partition that just
closed, declared freshness as Dagster freshness policies; and the order in which `jammi
materialize` runs a selection that mixes partitioned and unpartitioned assets."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from jammi.spec.project import load_project
from jammi_assets.automation import freshness_by_asset
from jammi_assets.definitions import build_assets, build_definitions, build_resources
from jammi_assets.jobs import AssetGraph, job_assets
from jammi_assets.run_plan import parse_partitions, plan_batches
from tests.conftest import REPO, write_project

COLUMNS = {"id": "str", "text": "str"}


def automated_project(root: Path):
    (root / "data" / "reviews").mkdir(parents=True)
    (root / "data" / "drops").mkdir(parents=True)
    (root / "data" / "reviews" / "2026-11-01.jsonl").write_text('{"id": "a", "text": "hi"}\n')
    (root / "data" / "drops" / "one.csv").write_text("id,text\n1,x\n")
    return write_project(root, {
        "reviews": {"kind": "jsonl", "path": "data/reviews/{date}.jsonl", "key": "id",
                    "columns": COLUMNS,
                    "partitions": {"by": "{date}", "granularity": "day", "start": "2026-11-01"},
                    "refresh": {"cron": "0 * * * *"},
                    "freshness": {"max_lag": "2h", "warn_lag": "1h"}},
        "drops": {"kind": "csv", "path": "data/drops/*.csv", "key": "id", "columns": COLUMNS,
                  "partitions": {"dynamic": "files"}, "refresh": {"cron": "0 6 * * *"}},
        "plain": {"kind": "csv", "path": "data/drops/one.csv", "key": "id", "columns": COLUMNS},
    }, {
        "reviews": {"source": "reviews", "text_columns": ["text"], "freshness": {"max_lag": "3h"}},
        "plain": {"source": "plain", "text_columns": ["text"],
                  "refresh": {"cron": "*/15 * * * *", "timezone": "Europe/Berlin"}},
    })


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return automated_project(tmp_path_factory.mktemp("automated"))


@pytest.fixture(scope="module")
def defs(project):
    return build_definitions(project)


def job_keys(defs: dg.Definitions, name: str) -> set[str]:
    job = defs.resolve_job_def(name)
    return {k.to_user_string() for k in job.asset_layer.executable_asset_keys}


def test_one_job_per_source_with_its_partitions(defs):
    jobs = {j.name: j for j in defs.resolve_all_job_defs() if not j.name.startswith("__")}
    assert sorted(jobs) == ["drops_job", "jammi_all", "plain_job", "reviews_job"]
    assert isinstance(jobs["reviews_job"].partitions_def, dg.DailyPartitionsDefinition)
    assert jobs["reviews_job"].partitions_def.start == datetime(2026, 11, 1, tzinfo=UTC)
    assert jobs["drops_job"].partitions_def == dg.DynamicPartitionsDefinition(name="drops_files")
    assert jobs["plain_job"].partitions_def is None and jobs["jammi_all"].partitions_def is None
    assert job_keys(defs, "reviews_job") == {"raw_reviews", "validated_reviews", "quarantine_reviews",
                                             "reviews_embeddings", "reviews_ann_index"}
    assert job_keys(defs, "drops_job") == {"raw_drops", "validated_drops", "quarantine_drops"}
    assert job_keys(defs, "jammi_all") == {"raw_plain", "validated_plain", "quarantine_plain",
                                           "plain_embeddings", "plain_ann_index", "quality_report"}
    assert jobs["reviews_job"].run_tags["jammi/source"] == "reviews"


def test_dagster_refuses_one_job_over_two_partitions_definitions(project):
    """Why `jammi_all` holds only the unpartitioned assets."""
    every = dg.define_asset_job("every", selection=dg.AssetSelection.all())
    with pytest.raises(dg.DagsterInvalidDefinitionError) as refused:
        dg.Definitions(assets=build_assets(project), jobs=[every],
                       resources=build_resources(project)).resolve_job_def("every")
    assert "Selected assets must have the same partitions definitions" in str(refused.value.__cause__)


def test_every_asset_is_in_some_job(defs, project):
    graph = AssetGraph.of(build_assets(project))
    covered = {a for names in job_assets(project, graph).values() for a in names}
    assert covered == set(graph.upstream)


def test_refresh_schedules_are_declared_and_running(defs):
    schedules = {s.name: s for s in defs.schedules}
    assert sorted(schedules) == ["drops_refresh", "plain_refresh", "reviews_refresh"]
    reviews, plain = schedules["reviews_refresh"], schedules["plain_refresh"]
    assert (reviews.cron_schedule, reviews.execution_timezone, reviews.job_name) == (
        "0 * * * *", "UTC", "reviews_job")
    assert (plain.cron_schedule, plain.execution_timezone, plain.job_name) == (
        "*/15 * * * *", "Europe/Berlin", "plain_job")
    assert {s.default_status for s in schedules.values()} == {dg.DefaultScheduleStatus.RUNNING}


def tick(defs, name: str, at: datetime, instance):
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at,
                                        repository_def=defs.get_repository_def())
    return defs.resolve_schedule_def(name).evaluate_tick(context)


@pytest.mark.parametrize("at, expected", [
    (datetime(2026, 11, 4, 10, 0, tzinfo=UTC), "2026-11-03"),
    (datetime(2026, 11, 4, 0, 0, tzinfo=UTC), "2026-11-03"),  # the window that just closed
    (datetime(2026, 11, 3, 23, 0, tzinfo=UTC), "2026-11-02"),
])
def test_schedule_runs_the_partition_that_closed_last(defs, at, expected):
    with dg.instance_for_test() as instance:
        result = tick(defs, "reviews_refresh", at, instance)
    (request,) = result.run_requests
    assert request.partition_key == expected and request.run_key == expected
    assert request.tags["jammi/source"] == "reviews" and request.tags["jammi/partition"] == expected
    assert request.tags["jammi/schedule"] == "reviews_refresh"


def test_schedule_skips_before_the_first_window_closes(defs):
    with dg.instance_for_test() as instance:
        result = tick(defs, "reviews_refresh", datetime(2026, 11, 1, 12, tzinfo=UTC), instance)
    assert result.run_requests == [] and "has closed yet" in result.skip_message


def test_unpartitioned_and_dynamic_schedules(defs):
    at = datetime(2026, 11, 4, 6, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        (plain,) = tick(defs, "plain_refresh", at, instance).run_requests
        assert plain.partition_key is None and plain.run_key is None
        assert {k.to_user_string() for k in plain.asset_selection} == {
            "raw_plain", "validated_plain", "quarantine_plain", "plain_embeddings", "plain_ann_index"}
        assert tick(defs, "drops_refresh", at, instance).run_requests == []
        instance.add_dynamic_partitions("drops_files", ["one.csv", "two.csv"])
        requests = tick(defs, "drops_refresh", at, instance).run_requests
    assert sorted(r.partition_key for r in requests) == ["one.csv", "two.csv"]
    assert {r.run_key for r in requests} == {f"{k}@{at.isoformat()}" for k in ("one.csv", "two.csv")}


def test_freshness_becomes_a_policy_on_the_declared_assets(defs, project):
    graph = defs.resolve_asset_graph()
    policies = {k.to_user_string(): graph.get(k).freshness_policy for k in graph.get_all_asset_keys()}
    source = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2), warn_window=timedelta(hours=1))
    pipeline = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=3))
    assert {k for k, p in policies.items() if p is not None} == {
        "raw_reviews", "validated_reviews", "quarantine_reviews", "reviews_embeddings", "reviews_ann_index"}
    assert policies["raw_reviews"] == policies["quarantine_reviews"] == source
    assert policies["reviews_embeddings"] == policies["reviews_ann_index"] == pipeline
    assert set(freshness_by_asset(project)) == {k for k, p in policies.items() if p is not None}


def test_demo_definitions_have_a_job_per_source():
    demo = build_definitions(load_project(REPO / "jammi.yaml"))
    names = {j.name for j in demo.resolve_all_job_defs()}
    assert {"jammi_all", "products_job", "reviews_job", "inventory_job", "partners_job"} <= names


@pytest.mark.skipif(importlib.util.find_spec("sensors.postgres_watermark") is None,
                    reason="sensors/postgres_watermark.py is not there")
def test_watermark_sensors_are_part_of_the_automation(tmp_path, monkeypatch):
    monkeypatch.setenv("JAMMI_TEST_DSN", "postgresql://127.0.0.1/test")
    project = write_project(tmp_path, {"people": {
        "kind": "postgres", "dsn": "${JAMMI_TEST_DSN}", "table": "people", "key": "id",
        "columns": {"id": "int", "updated_at": "datetime"}, "watermark": "updated_at"}})
    names = {s.name for s in build_definitions(project).sensors}
    assert "people_watermark_sensor" in names


# -- the order of a mixed selection's runs (jammi_assets.run_plan) ----------------------------

UPSTREAM = {
    "raw_p": set(), "validated_p": {"raw_p"}, "quarantine_p": {"raw_p"},
    "raw_r": set(), "validated_r": {"raw_r", "validated_p"}, "quarantine_r": {"raw_r", "validated_p"},
    "r_embeddings": {"validated_r"}, "r_index": {"r_embeddings"},
    "p_embeddings": {"validated_p"}, "report": {"validated_p", "validated_r", "r_index"},
}
GROUP = {a: ("r" if a.startswith(("raw_r", "validated_r", "quarantine_r", "r_")) else None)
         for a in UPSTREAM}
STEPS = {"validated_p": "validate_p", "quarantine_p": "validate_p",
         "validated_r": "validate_r", "quarantine_r": "validate_r"}


def test_mixed_selection_runs_upstream_first_and_keeps_steps_whole():
    batches = plan_batches(list(UPSTREAM), UPSTREAM, GROUP, STEPS)
    assert [(b.group, sorted(b.assets)) for b in batches] == [
        (None, ["p_embeddings", "quarantine_p", "raw_p", "validated_p"]),
        ("r", ["quarantine_r", "r_embeddings", "r_index", "raw_r", "validated_r"]),
        (None, ["report"]),
    ]


def test_a_selection_within_one_group_is_one_batch():
    chosen = ["raw_r", "validated_r", "quarantine_r", "r_embeddings"]
    assert [(b.group, b.assets) for b in plan_batches(chosen, UPSTREAM, GROUP, STEPS)] == [
        ("r", chosen)]


def test_order_looks_through_assets_that_are_not_chosen():
    batches = plan_batches(["raw_p", "r_index", "report"], UPSTREAM, GROUP, STEPS)
    assert [b.assets for b in batches] == [["raw_p"], ["r_index"], ["report"]]


@pytest.mark.parametrize("text, expected", [
    ("2026-11-03", ("2026-11-03", None)),
    ("2026-11-01...2026-11-30", ("2026-11-01", "2026-11-30")),
    (" a.csv ", ("a.csv", None)),
])
def test_partition_argument(text, expected):
    assert parse_partitions(text) == expected


def test_partition_range_needs_both_ends():
    with pytest.raises(ValueError, match="FIRST...LAST"):
        parse_partitions("2026-11-01...")
