"""`jammi materialize`: `--select` names expand to the assets they mean, and an asset that
shares its step with others brings them along, as the Dagster UI does; its runs are recorded
under their job with the code location's origin (so the UI re-executes them), one partition
runs in this process and a range is a backfill."""

from __future__ import annotations

import os
import socket
import sys

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import (
    InProcessWorkspaceLoadTarget,
    location_origins_from_yaml_paths,
)
from dagster_graphql.client.query import LAUNCH_PIPELINE_REEXECUTION_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql

from jammi.errors import JammiError
from jammi.spec.project import PROJECT_ENV, load_project
from jammi_assets import launch, run_guard
from jammi_assets.definitions import build_assets
from jammi_assets.runner import resolve_selection
from tests.conftest import PRODUCT_COLUMNS, REPO, invoke_cli, write_project


@pytest.fixture(scope="module")
def demo():
    project = load_project(REPO / "jammi.yaml")
    return project, build_assets(project)


def names(keys: list[dg.AssetKey]) -> list[str]:
    return [k.to_user_string() for k in keys]


@pytest.mark.parametrize("select, expected", [
    (["validated_products"], ["validated_products", "quarantine_products"]),
    (["quarantine_reviews"], ["quarantine_reviews", "validated_reviews"]),
    (["fused_product_links"], ["fused_product_links", "fused_product", "fused_product_provenance"]),
    (["raw_products"], ["raw_products"]),
    (["reviews"], ["raw_reviews", "validated_reviews", "quarantine_reviews", "reviews_embeddings",
                   "reviews_ann_index"]),
])
def test_selection_expands_names_and_step_siblings(demo, select, expected):
    project, assets = demo
    assert names(resolve_selection(project, select, assets)) == expected


def test_entity_name_selects_its_sources_fusion_and_pipelines(demo):
    project, assets = demo
    chosen = names(resolve_selection(project, ["product"], assets))
    assert {"raw_inventory", "validated_partners", "fused_product", "fused_product_links",
            "product_entities_embeddings", "product_entities_ann_index"} <= set(chosen)
    assert "products_embeddings" not in chosen


def test_unknown_name_lists_the_assets(demo):
    project, assets = demo
    with pytest.raises(JammiError, match="--select 'nope': not an asset, source, entity or pipeline"):
        resolve_selection(project, ["nope"], assets)


@pytest.mark.slow
def test_cli_materializes_an_asset_that_shares_its_step(tmp_path, products_csv, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    project = write_project(tmp_path, {"products": {"kind": "csv", "path": str(products_csv),
                                                    "key": "id", "columns": PRODUCT_COLUMNS}})
    cwd = os.getcwd()
    try:
        first = invoke_cli(["materialize", "--project", str(project.path), "--select", "raw_products"])
        result = invoke_cli(["materialize", "--project", str(project.path), "--select",
                             "validated_products"])
    finally:
        os.chdir(cwd)  # the runner works from DAGSTER_HOME
    assert first.exit_code == 0, first.output
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "validated_products" in result.output and "quarantine_products" in result.output


# -- runs the CLI starts are first-class (issue 10, item 6) -----------------------------------

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]


@pytest.fixture
def cli_home(tmp_path, monkeypatch):
    """A DAGSTER_HOME for `jammi materialize`, and the instance on it; the runner works from
    the home and names the project in $JAMMI_PROJECT: both are put back afterwards."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv(PROJECT_ENV, "")
    monkeypatch.chdir(tmp_path)
    instance = dg.DagsterInstance.from_config(str(home))
    yield instance
    instance.dispose()


def dated_project(root):
    folder = root / "data" / "reviews"
    folder.mkdir(parents=True)
    for n, day in enumerate(DAYS):
        (folder / f"{day}.jsonl").write_text(f'{{"id": "r{n}", "text": "review of {day}"}}\n')
    return write_project(root, {"reviews": {
        "kind": "jsonl", "path": "data/reviews/{date}.jsonl", "key": "id",
        "columns": {"id": "str", "text": "str"},
        "partitions": {"by": "{date}", "granularity": "day", "start": DAYS[0]}}})


def test_workspace_declares_the_location_the_runs_name():
    (origin,) = location_origins_from_yaml_paths([str(REPO / "workspace.yaml")])
    assert origin.location_name == launch.LOCATION_NAME
    assert origin.loadable_target_origin.module_name == launch.MODULE


# the UI's instance, but launching runs in its own process at once (no daemon, no gRPC server)
UI_INSTANCE = """
telemetry: {enabled: false}
run_launcher: {module: dagster._core.launcher.sync_in_memory_run_launcher, class: SyncInMemoryRunLauncher}
run_coordinator: {module: dagster._core.run_coordinator, class: DefaultRunCoordinator}
"""
RUN_QUERY = """query($runId: ID!) { runOrError(runId: $runId) { ... on Run {
  jobName repositoryOrigin { repositoryLocationName repositoryName } hasReExecutePermission } } }"""


@pytest.mark.slow
def test_cli_run_is_recorded_under_its_job_and_the_ui_reexecutes_it(tmp_path, products_csv,
                                                                     monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(UI_INSTANCE, encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv(PROJECT_ENV, "")
    monkeypatch.chdir(tmp_path)
    project = write_project(tmp_path, {"products": {"kind": "csv", "path": str(products_csv),
                                                    "key": "id", "columns": PRODUCT_COLUMNS}})
    result = invoke_cli(["materialize", "--project", str(project.path), "--select", "products"])
    assert result.exit_code == 0, result.output
    instance = dg.DagsterInstance.from_config(str(home))
    (run,) = instance.get_runs()
    assert run.job_name == "products_job" and run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["jammi/source"] == "products" and "jammi/partition" not in run.tags
    assert {k.to_user_string() for k in run.asset_selection} == {
        "raw_products", "validated_products", "quarantine_products"}
    origin = run.remote_job_origin
    assert (origin.location_name, origin.repository_origin.repository_name, origin.job_name) == (
        "jammi", "__repository__", "products_job")
    assert run.job_code_origin.repository_origin.code_pointer.module == "jammi_assets.definitions"
    assert f"(run {run.run_id})" in result.output

    # the UI: the workspace.yaml location (in process here), its GraphQL API, its Re-execute
    target = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=launch.MODULE,
                             working_directory=str(REPO)), location_name=origin.location_name)
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget([target])) as workspace:
        context = workspace.create_request_context()
        shown = execute_dagster_graphql(context, RUN_QUERY, {"runId": run.run_id}).data["runOrError"]
        assert shown == {"jobName": "products_job", "hasReExecutePermission": True,
                         "repositoryOrigin": {"repositoryLocationName": "jammi",
                                              "repositoryName": "__repository__"}}
        launched = execute_dagster_graphql(context, LAUNCH_PIPELINE_REEXECUTION_MUTATION, {
            "reexecutionParams": {"parentRunId": run.run_id, "strategy": "ALL_STEPS"}}).data
        assert launched["launchPipelineReexecution"]["__typename"] == "LaunchRunSuccess", launched
        child_id = launched["launchPipelineReexecution"]["run"]["runId"]
        recon = context.get_code_location("jammi").get_reconstructable_job(launch.REPOSITORY,
                                                                            run.job_name)
    rerun = instance.get_run_by_id(child_id)
    assert rerun.status == dg.DagsterRunStatus.SUCCESS and rerun.parent_run_id == run.run_id
    assert rerun.tags["jammi/source"] == "products" and rerun.asset_selection == run.asset_selection
    materialized = instance.get_records_for_run(
        rerun.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    assert len(materialized) == 3

    # the Python API's re-execution of the same run, one step of it
    again = dg.execute_job(recon, instance, reexecution_options=dg.ReexecutionOptions(
        parent_run_id=run.run_id, step_selection=["validate_products"]))
    assert again.success and again.dagster_run.parent_run_id == run.run_id
    assert {e.asset_key.to_user_string() for e in again.get_asset_materialization_events()} == {
        "validated_products", "quarantine_products"}
    instance.dispose()


@pytest.mark.slow
def test_one_partition_runs_here_with_its_tags(tmp_path, cli_home):
    project = dated_project(tmp_path)
    result = invoke_cli(["materialize", "--project", str(project.path), "--partition", DAYS[1]])
    assert result.exit_code == 0, result.output
    report, run = cli_home.get_runs()  # newest first: the quality report runs after the partition
    assert report.job_name == "jammi_all" and "dagster/partition" not in report.tags
    assert {k.to_user_string() for k in report.asset_selection} == {"quality_report"}
    assert run.job_name == "reviews_job" and run.remote_job_origin.job_name == "reviews_job"
    assert run.tags["jammi/partition"] == run.tags["dagster/partition"] == DAYS[1]
    assert run.tags["jammi/source"] == "reviews"
    assert f"raw_reviews [{DAYS[1]}]" in result.output
    assert not cli_home.get_backfills()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_partition_range_is_a_backfill(tmp_path, cli_home, workers):
    project = dated_project(tmp_path)
    result = invoke_cli(["materialize", "--project", str(project.path), "--select", "reviews",
                         "--partition", f"{DAYS[0]}...{DAYS[1]}", "--workers", str(workers)])
    assert result.exit_code == 0, result.output
    (backfill,) = cli_home.get_backfills()
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
    assert list(backfill.partition_names) == DAYS[:2]
    assert backfill.partition_set_origin.partition_set_name == "reviews_job_partition_set"
    runs = cli_home.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
    assert sorted(r.tags["jammi/partition"] for r in runs) == DAYS[:2]
    assert {(r.job_name, r.status) for r in runs} == {("reviews_job", dg.DagsterRunStatus.SUCCESS)}
    assert all(r.remote_job_origin.location_name == "jammi" for r in runs)
    assert f"backfill {backfill.backfill_id}" in result.output
    assert f"validated_reviews [{DAYS[1]}]" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("partition, message", [
    ("2026-12-25", "--partition '2026-12-25' is not a partition of source 'reviews' (2026-11-01 ..."),
    ("2026-11-03...2026-11-01", "'2026-11-01' comes before '2026-11-03'"),
])
def test_bad_partitions_are_refused_in_one_line(tmp_path, cli_home, partition, message):
    project = dated_project(tmp_path)
    result = invoke_cli(["materialize", "--project", str(project.path), "--partition", partition])
    assert result.exit_code == 1 and message in result.output, result.output
    assert not cli_home.get_runs()


@pytest.mark.slow
def test_partition_of_an_unpartitioned_selection_is_refused(tmp_path, products_csv, cli_home):
    project = write_project(tmp_path, {"products": {"kind": "csv", "path": str(products_csv),
                                                    "key": "id", "columns": PRODUCT_COLUMNS}})
    result = invoke_cli(["materialize", "--project", str(project.path), "--partition", "x"])
    assert result.exit_code == 1 and "nothing selected is partitioned" in result.output


def test_a_reexecution_inherits_the_pid_tag_but_is_not_cleared_as_dead(cli_home):
    """The UI's re-execution (and run retries) copy the parent's `jammi/pid`; the run is not
    executed by that process, so a later `jammi materialize` must leave it alone."""
    dead = f"{socket.gethostname()}:4194302:1.000"  # above any pid Linux hands out
    for run_id, extra in (("a" * 8, {}), ("b" * 8, {"dagster/parent_run_id": "a" * 8})):
        cli_home.add_run(dg.DagsterRun(job_name="products_job", run_id=run_id,
                                       status=dg.DagsterRunStatus.STARTED,
                                       tags={run_guard.PID_TAG: dead, **extra}))
    cleared = run_guard.clear_dead_runs(cli_home)
    assert [c.run_id for c in cleared] == ["a" * 8]
    assert cli_home.get_run_by_id("b" * 8).status == dg.DagsterRunStatus.STARTED
