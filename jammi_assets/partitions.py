"""Dagster partitions definitions made from a source's declared `partitions:`."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from jammi.spec.automation import KEY_FORMATS, PartitionSpec, partition_start
from jammi.spec.project import Project

_TIME = {"hour": dg.HourlyPartitionsDefinition, "day": dg.DailyPartitionsDefinition,
         "week": dg.WeeklyPartitionsDefinition, "month": dg.MonthlyPartitionsDefinition}


def dynamic_partitions_name(source: str) -> str:
    return f"{source}_files"


def partitions_for(name: str, spec: PartitionSpec | None) -> dg.PartitionsDefinition | None:
    if spec is None:
        return None
    if spec.dynamic:
        return dg.DynamicPartitionsDefinition(name=dynamic_partitions_name(name))
    fmt = KEY_FORMATS[spec.granularity]
    start = partition_start(spec).strftime(fmt)
    end = datetime.fromisoformat(spec.end).strftime(fmt) if spec.end else None
    return _TIME[spec.granularity](start_date=start, end_date=end, timezone=spec.timezone)


def source_partitions(project: Project, name: str) -> dg.PartitionsDefinition | None:
    """The partitions of a source's raw_/validated_/quarantine_ assets, and of the pipelines
    over it (None: unpartitioned)."""
    spec = project.sources.get(name)
    return partitions_for(name, spec.partitions) if spec is not None else None
