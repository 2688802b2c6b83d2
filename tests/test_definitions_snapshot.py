"""A snapshot of the definitions the demo project yields, so a refactor that changes the asset
graph (a key, group, kind, dependency, check, partitioning, job or sensor) fails loudly.

After an intended change, regenerate with `JAMMI_UPDATE_SNAPSHOTS=1 make test` and review the
diff of tests/snapshots/demo_definitions.json like any other change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from jammi.spec.project import load_project
from jammi_assets.definitions import build_definitions
from tests.conftest import REPO

SNAPSHOT = REPO / "tests" / "snapshots" / "demo_definitions.json"


def describe(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for spec in sorted(defs.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string()):
        node = graph.get(spec.key)
        assets[spec.key.to_user_string()] = {
            "group": spec.group_name,
            "kinds": sorted(node.kinds),
            "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
            "code_version": spec.code_version,
            "partitions": None if spec.partitions_def is None else str(spec.partitions_def),
            "automation": spec.automation_condition is not None,
            "checks": sorted(
                f"{c.name}{' (blocking)' if graph.get_check_spec(c).blocking else ''}"
                for c in node.check_keys),
        }
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
        "sensors": sorted(f"{s.name}: {s.default_status.value}" for s in defs.sensors or []),
        "schedules": sorted(s.name for s in defs.schedules or []),
        "resources": sorted(defs.resources or {}),
    }


def test_demo_definitions_match_the_snapshot():
    current = describe(build_definitions(load_project(REPO / "jammi.yaml")))
    if os.environ.get("JAMMI_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert current == expected


def test_code_location_loads_through_the_component(monkeypatch):
    """The code location dagster and dg load: the defs folder's one component over jammi.yaml."""
    from jammi_assets.definitions import defs

    monkeypatch.setenv("JAMMI_PROJECT", str(REPO / "jammi.yaml"))
    loaded = defs()
    expected = build_definitions(load_project(REPO / "jammi.yaml"))
    assert {k.to_user_string() for k in loaded.resolve_all_asset_keys()} == {
        k.to_user_string() for k in expected.resolve_all_asset_keys()}


@pytest.mark.slow
def test_dg_check_defs_passes():
    """`dg check defs`, the dg way of validating the component's YAML and the definitions."""
    dg_cli = Path(sys.executable).parent / "dg"
    env = {**os.environ, "JAMMI_PROJECT": str(REPO / "jammi.yaml"), "DAGSTER_HOME": str(REPO)}
    run = subprocess.run([str(dg_cli), "check", "defs"], capture_output=True, text=True, cwd=REPO,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "All definitions loaded successfully" in run.stdout + run.stderr
