"""Jobs, schedules and sensors made from what jammi.yaml declares (`refresh`, `freshness`,
`partitions`, file sources)."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from jammi.spec.project import Project
from sensors.source_files import build_source_files_sensor

ALL_ASSETS_JOB = "jammi_all"


@dataclass
class Automation:
    jobs: list = field(default_factory=list)
    schedules: list = field(default_factory=list)
    sensors: list = field(default_factory=list)


def build_automation(project: Project, assets: list[dg.AssetsDefinition]) -> Automation:
    job = dg.define_asset_job(ALL_ASSETS_JOB, selection=dg.AssetSelection.all(),
                              description="Every asset of the project.")
    return Automation(jobs=[job], sensors=[build_source_files_sensor(project, job)])
