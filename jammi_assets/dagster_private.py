"""Dagster's private API, fenced: every `dagster._…` name Jammi uses comes from here, each with
the reason no public Dagster 1.13 API does its job. Nothing else in jammi, jammi_assets,
resources or sensors imports `dagster._…`.

tests/test_dagster_private.py pins the Dagster versions this fence was checked against
(DAGSTER_VERSIONS, the range pyproject.toml allows) and asserts that every name below, every
parameter Jammi passes them and every private attribute Jammi reads or replaces still exists,
so an upgrade of Dagster fails there, loudly, instead of breaking runs silently.

Two of them are patched at run time (jammi_assets.run_guard.sleeping_slot_waits): the
in-process executor's `InstanceConcurrencyContext` is swapped for a subclass whose waits for a
pool slot sleep, and that subclass reads `_pending_timeouts`, `_pending_claims`, `_instance` and
`_run_id` of Dagster's class (PATCHED_ATTRIBUTES)."""

from __future__ import annotations

from typing import TYPE_CHECKING

# validate_config (jammi_assets.executors, jammi_assets.deployment): checks a value against a
# config schema without resolving it, so `{env: VAR}` stays as given and the executor's config
# and dagster.yaml's classes are checked where those variables are not set. The public
# dg.validate_run_config needs a job and resolves every `{env: ...}`.
from dagster._config import validate_config

# The next seven (jammi_assets.launch): runs the UI lists under the code location and can
# re-execute. The public dg.execute_job creates its own run, without the code location's remote
# origin (so the UI neither files it under the `jammi` location nor offers "Re-execute"), and
# cannot execute a run created beforehand (a backfill creates all its runs first).
# CodePointer: where a run worker finds the repository (module, attribute, working directory),
# part of the job's code origin; nothing public builds a code origin.
from dagster._core.code_pointer import CodePointer

# InMemoryJob, execute_run_iterator: execute an existing run record in this process (every
# public execute path creates a new run).
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run_iterator

# merge_run_tags: the tags a launch gives a run (the job's, the partition's, the key checked
# against the selection), as the UI's launch computes them; no public function does.
from dagster._core.execution.execute_in_process import merge_run_tags

# InstanceConcurrencyContext, replaced in the in-process executor's module `in_process`
# (jammi_assets.run_guard): Dagster 1.13's wait for a pool slot re-checks without sleeping
# (interval_to_next_pending_claim_check returns min([0, ...]), never positive) and cannot be
# interrupted; no public hook or setting changes how a step waits for its slot.
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.executor import in_process

# dagster_instance_config (jammi_assets.deployment): the instance's own schema check of
# dagster.yaml, without constructing its storage (DagsterInstance.from_config connects to it).
from dagster._core.instance.config import dagster_instance_config

# RepositoryPythonOrigin and the remote origins (jammi_assets.launch): the code location's
# origins (location `jammi`, repository `__repository__`) that the UI matches a run with;
# DagsterInstance.create_run_for_job takes them, nothing public builds them.
from dagster._core.origin import RepositoryPythonOrigin
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemotePartitionSetOrigin,
    RemoteRepositoryOrigin,
)

# BACKFILL_ID_TAG, PARENT_RUN_ID_TAG (jammi_assets.launch, jammi_assets.run_guard): the tags
# Dagster puts on a backfill's runs and on a re-execution. Tags are public, the constants that
# name them are not; taken from Dagster, so a renamed tag fails the fence test.
from dagster._core.storage.tags import BACKFILL_ID_TAG, PARENT_RUN_ID_TAG

# LoadableTargetOrigin (jammi_assets.launch): how `dagster dev -w workspace.yaml` loads the
# code location (executable, module, working directory), part of its remote origin.
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

# ExecuteRunArgs (jammi_assets.launch): what `dagster api execute_run`, the process the
# default run launcher starts, reads; the public dg.serialize_value writes it, nothing public
# builds it.
from dagster._grpc.types import ExecuteRunArgs

# convert_dagster_submodule_name (jammi_assets.deployment): the module a `{module, class}`
# block of dagster.yaml names, mapped as Dagster maps it when it loads the class
# (dagster.core.x -> dagster._core.x).
from dagster._utils import convert_dagster_submodule_name

# check_captured_interrupt (jammi_assets.run_guard): whether Dagster's own SIGINT/SIGTERM
# handler, installed while a run executes in this process, caught a signal; only Dagster
# knows, and nothing public asks it.
from dagster._utils.interrupts import check_captured_interrupt

if TYPE_CHECKING:
    # -- backfill records (jammi_assets.launch) ---------------------------------------------
    # PartitionBackfill and BulkActionStatus: the record of a backfill whose runs this process
    # created, for the UI's backfills page; DagsterInstance.add_backfill takes it and nothing
    # public builds one (a backfill is otherwise launched by the UI or its GraphQL API).
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

DAGSTER_VERSIONS = "==1.13.27"  # what this fence was checked against; pyproject.toml's pin
LAZY = {"BulkActionStatus", "PartitionBackfill"}  # their module loads Dagster's asset-backfill
# machinery (0.13 s): only a backfill needs them, not every load of the code location
PATCHED_ATTRIBUTES = {
    # module attribute -> what it must still be, for the swap to take effect
    "in_process.InstanceConcurrencyContext": "looked up when the executor runs a step",
    # private attributes the replacement reads and writes
    "InstanceConcurrencyContext._pending_timeouts": "step key -> time of its next slot check",
    "InstanceConcurrencyContext._pending_claims": "step keys waiting for a slot",
    "InstanceConcurrencyContext._instance": "the DagsterInstance",
    "InstanceConcurrencyContext._run_id": "the run's id",
}

__all__ = [
    "BACKFILL_ID_TAG", "PARENT_RUN_ID_TAG", "BulkActionStatus", "CodePointer", "ExecuteRunArgs",
    "InMemoryJob", "InstanceConcurrencyContext", "LoadableTargetOrigin",
    "ManagedGrpcPythonEnvCodeLocationOrigin",
    "PartitionBackfill", "RemoteJobOrigin", "RemotePartitionSetOrigin", "RemoteRepositoryOrigin",
    "RepositoryPythonOrigin", "check_captured_interrupt", "convert_dagster_submodule_name",
    "dagster_instance_config", "execute_run_iterator", "in_process", "merge_run_tags",
    "validate_config",
]


def __getattr__(name: str) -> object:
    if name in LAZY:
        # PartitionBackfill, BulkActionStatus: why, see the TYPE_CHECKING block above
        from dagster._core.execution import backfill

        return getattr(backfill, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
