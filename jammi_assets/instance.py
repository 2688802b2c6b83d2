"""The Dagster instance that `jammi materialize` runs on and `jammi stream` reports to: the
local one `dagster dev` shows, chosen as jammi_assets.deployment says."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from jammi.spec.project import Project

QUIET_INSTANCE = "# written by jammi: a local instance with default storage\ntelemetry:\n  enabled: false\n"


def use_local_instance(project: Project) -> dg.DagsterInstance:
    """$DAGSTER_HOME if set; else the project folder when it holds dagster.yaml; else a
    dagster_home folder inside the artifact directory. Runs show up in `dagster dev`. A home
    without dagster.yaml gets one that only turns telemetry off. $DAGSTER_DEPLOYMENT (when
    DAGSTER_HOME is not set) picks its deployment's instance (jammi_assets.deployment)."""
    from jammi_assets.deployment import select_instance

    select_instance()
    if not os.environ.get("DAGSTER_HOME"):
        home = project.root if (project.root / "dagster.yaml").exists() else (
            project.artifact_dir / "dagster_home")
        home.mkdir(parents=True, exist_ok=True)
        os.environ["DAGSTER_HOME"] = str(home)
    config = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    if not config.exists():  # else Dagster prints its telemetry banner on every run
        config.write_text(QUIET_INSTANCE, encoding="utf-8")
    os.chdir(os.environ["DAGSTER_HOME"])  # dagster.yaml's relative storage paths
    return dg.DagsterInstance.get()
