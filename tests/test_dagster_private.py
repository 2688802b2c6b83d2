"""The fence around Dagster's private API (jammi_assets.dagster_private): the only module that
imports `dagster._…`, every import saying why, checked against the Dagster version pyproject.toml
pins; every name, the parameters Jammi passes it and every private attribute Jammi reads or
replaces still exist. An upgrade of Dagster that moves any of them fails here, by name."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import tomllib

import dagster as dg
import pytest
from packaging.requirements import Requirement

from jammi_assets import dagster_private as dp
from jammi_assets import launch, run_guard
from tests.conftest import REPO

FENCE = REPO / "jammi_assets" / "dagster_private.py"


def _dagster_requirement() -> Requirement:
    doc = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    found = [Requirement(d) for d in doc["project"]["dependencies"] if Requirement(d).name == "dagster"]
    assert len(found) == 1, found
    return found[0]


def test_the_installed_dagster_is_the_one_the_fence_was_checked_against():
    """Raising Dagster's pin in pyproject.toml fails here until the fence is checked against
    the new version and DAGSTER_VERSIONS follows."""
    pinned = _dagster_requirement().specifier
    assert str(pinned) == dp.DAGSTER_VERSIONS
    assert dg.__version__ in pinned, f"dagster {dg.__version__} installed, the fence knows {pinned}"


def _private_imports(path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        found += [f"{path.relative_to(REPO)}: {n}" for n in names if n.startswith("dagster._")]
    return found


def test_nothing_but_the_fence_imports_dagster_private_modules():
    outside = [hit for package in ("jammi", "jammi_assets", "resources", "sensors")
               for path in sorted((REPO / package).rglob("*.py")) if path != FENCE
               for hit in _private_imports(path)]
    assert outside == []


def test_every_import_of_the_fence_says_why():
    """Each import is right below a comment, or below an import that is (one comment may
    explain a group of imports written together)."""
    lines = FENCE.read_text(encoding="utf-8").splitlines()
    tree = ast.parse(FENCE.read_text(encoding="utf-8"))
    imports = [n for n in ast.walk(tree)
               if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("dagster._")]
    assert imports
    explained_until = 0  # the last line of the last explained import
    silent = []
    for node in sorted(imports, key=lambda n: n.lineno):
        above = lines[node.lineno - 2].strip()
        if above.startswith("#") or node.lineno - 1 == explained_until:
            explained_until = node.end_lineno or node.lineno
        else:
            silent.append(f"line {node.lineno}: {node.module}")
    assert silent == []


@pytest.mark.parametrize("name", dp.__all__)
def test_every_fenced_name_still_exists(name):
    assert getattr(dp, name) is not None


@pytest.mark.slow
def test_the_backfill_names_load_only_when_asked_for():
    code = ("import sys, jammi_assets.dagster_private as dp\n"
            "before = 'dagster._core.execution.backfill' in sys.modules\n"
            "dp.PartitionBackfill\n"
            "print(before, 'dagster._core.execution.backfill' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def _accepts(target, *args, **kwargs) -> None:
    inspect.signature(target).bind(*args, **kwargs)  # TypeError names what no longer fits


def test_the_run_making_names_take_what_launch_passes():
    """The calls of jammi_assets.launch, bound to today's signatures (nothing runs)."""
    _accepts(dp.LoadableTargetOrigin, executable_path="py", module_name="m", working_directory="/")
    _accepts(dp.ManagedGrpcPythonEnvCodeLocationOrigin, "target", "jammi")
    _accepts(dp.RemoteRepositoryOrigin, "location origin", "__repository__")
    _accepts(dp.RemoteJobOrigin, "repository origin", "job")
    _accepts(dp.RemotePartitionSetOrigin, repository_origin="origin", partition_set_name="x")
    _accepts(dp.RepositoryPythonOrigin, executable_path="py", code_pointer="pointer", entry_point=["py"])
    _accepts(dp.CodePointer.from_module, "m", "defs", "/")
    _accepts(dp.InMemoryJob, "job")
    _accepts(dp.execute_run_iterator, "job", "run", "instance")
    _accepts(dp.merge_run_tags, job_def="job", partition_key=None, tags={}, asset_selection=[],
             instance=None, run_config={})
    _accepts(dp.ExecuteRunArgs, job_origin="origin", run_id="r", instance_ref=None,
             set_exit_code_on_failure=True)
    _accepts(dp.PartitionBackfill, backfill_id="b", status="s", from_failure=False, tags={},
             backfill_timestamp=0.0, asset_selection=[], title="t", partition_set_origin="o",
             partition_names=["k"], last_submitted_partition_name="k", reexecution_steps=None)
    assert callable(dp.PartitionBackfill.with_status) and callable(dp.PartitionBackfill.with_end_timestamp)
    assert {"REQUESTED", "COMPLETED_SUCCESS", "COMPLETED_FAILED"} <= set(dp.BulkActionStatus.__members__)


def test_the_origins_launch_makes_are_built_by_todays_classes():
    origin = launch.repository_origin()
    assert origin.code_location_origin.location_name == launch.LOCATION_NAME
    job_origin = launch.python_origin().get_job_origin("products_job")
    assert job_origin.job_name == "products_job"


def test_the_system_tags_keep_their_names():
    assert dp.BACKFILL_ID_TAG == "dagster/backfill"
    assert dp.PARENT_RUN_ID_TAG == "dagster/parent_run_id"


def test_validate_config_checks_without_resolving_env():
    config_type = dg.multiprocess_executor.config_schema.config_type
    bad = dp.validate_config(config_type, {"max_concurent": 2})
    assert not bad.success and any("max_concurent" in e.message for e in bad.errors)
    unresolved = dp.validate_config(dg.Shape({"broker": dg.Field(dg.StringSource)}),
                                    {"broker": {"env": "JAMMI_NOT_SET_ANYWHERE"}})
    assert unresolved.success and unresolved.value == {"broker": {"env": "JAMMI_NOT_SET_ANYWHERE"}}


def test_the_instance_config_check_and_the_module_mapping(tmp_path):
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert dp.dagster_instance_config(str(tmp_path))
    assert dp.convert_dagster_submodule_name("dagster.core.launcher", "private") == "dagster._core.launcher"
    assert dp.check_captured_interrupt() is False


def test_the_unfinished_statuses_are_dagsters_less_queued():
    from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

    assert set(run_guard.UNFINISHED) == set(NOT_FINISHED_STATUSES) - {dg.DagsterRunStatus.QUEUED}


# --- the patch of jammi_assets.run_guard -------------------------------------------------------


def test_the_in_process_executor_looks_the_context_up_when_it_runs_a_step():
    assert dp.in_process.InstanceConcurrencyContext is dp.InstanceConcurrencyContext
    assert "InstanceConcurrencyContext(" in inspect.getsource(dp.in_process)


def test_the_replaced_methods_keep_their_signatures():
    claim = inspect.signature(dp.InstanceConcurrencyContext.claim)
    assert list(claim.parameters) == ["self", "concurrency_key", "step_key", "step_priority"]
    interval = inspect.signature(dp.InstanceConcurrencyContext.interval_to_next_pending_claim_check)
    assert list(interval.parameters) == ["self"]


def test_the_private_attributes_the_replacement_reads_exist():
    instance = dg.DagsterInstance.ephemeral()
    run = dg.DagsterRun(job_name="j", run_id="r" * 8)
    context = dp.InstanceConcurrencyContext(instance, run)
    attributes = [a.split(".", 1)[1] for a in dp.PATCHED_ATTRIBUTES
                  if a.startswith("InstanceConcurrencyContext.")]
    assert [a for a in attributes if not hasattr(context, a)] == []
    assert isinstance(context._pending_timeouts, dict) and isinstance(context._pending_claims, set)
    assert context._instance is instance and context._run_id == run.run_id


def test_the_swap_takes_effect_and_is_undone():
    original = dp.in_process.InstanceConcurrencyContext
    with run_guard.sleeping_slot_waits(lambda _line: None):
        swapped = dp.in_process.InstanceConcurrencyContext
        assert swapped is not original and issubclass(swapped, original)
    assert dp.in_process.InstanceConcurrencyContext is original


@pytest.mark.slow
def test_dagsters_run_worker_command_is_still_there():
    """jammi_assets.run_worker runs `dagster api execute_run` in its own process."""
    out = subprocess.run([sys.executable, "-m", "jammi_assets.run_worker", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "INPUT_JSON" in out.stdout, out.stderr[-2000:]
