"""`JammiProject`, the Dagster Component over a jammi.yaml: one instance, declared in
`jammi_assets/defs/jammi/defs.yaml`, turns the project file into every asset, check,
resource, job and sensor. jammi.yaml keeps its own schema (jammi.spec) and stays readable
without Dagster; the component only points at it.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from jammi.spec.project import PROJECT_ENV, load_project
from jammi_assets.definitions import build_definitions


class JammiProject(dg.Component, dg.Model, dg.Resolvable):
    """Assets, checks, jobs and sensors of a Jammi project file.

    `project` is a path relative to this defs.yaml; $JAMMI_PROJECT, when set, takes its place
    (the CLI, `make` and tests point the same code location at other projects that way).
    """

    project: str = "jammi.yaml"

    def project_file(self, context: dg.ComponentLoadContext) -> Path:
        """The jammi.yaml this instance builds from: $JAMMI_PROJECT when set, else `project`
        resolved against the folder of the defs.yaml that declares the instance."""
        chosen = os.environ.get(PROJECT_ENV)
        return Path(chosen) if chosen else (context.path / self.project).resolve()

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """Every asset, check, resource, job, schedule and sensor of the project file, as
        jammi_assets.definitions.build_definitions makes them."""
        return build_definitions(load_project(self.project_file(context)))
