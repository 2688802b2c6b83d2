"""One partition of a partitioned source: the file its `{date}` path segment names, the file a
dynamic `files` partition is, or the rows whose timestamp column falls in its window."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from jammi.errors import SourceError
from jammi.ingest.extract import extract, source_files
from jammi.spec.automation import PATH_SEGMENT, partition_window
from jammi.spec.project import Project


@dataclass
class PartitionRows:
    rows: pd.DataFrame
    unplaced: int = 0  # rows of the source whose timestamp cannot be read: in no partition


def extract_partition(project: Project, name: str, partition: str) -> PartitionRows:
    spec = project.sources[name]
    part = spec.partitions
    if part is None:
        raise SourceError(f"source {name!r} is not partitioned; materialize it without a partition")
    if part.dynamic == "files":
        matches = [f for f in source_files(project, name, spec) if f.name == partition]
        if not matches:
            raise SourceError(f"source {name!r}: partition {partition!r} names no file matched by "
                              f"{spec.path!r}")
        return PartitionRows(extract(project, name, spec.model_copy(update={"path": str(matches[0])})))
    try:
        start, end = partition_window(part, partition)
    except ValueError as err:
        raise SourceError(f"source {name!r}: {err}") from None
    if part.by_path:
        path = spec.path.replace(PATH_SEGMENT, partition)
        return PartitionRows(extract(project, name, spec.model_copy(update={"path": path})))
    rows = extract(project, name)
    when = parse_times(rows[part.by], part.timezone)
    return PartitionRows(rows[(when >= start) & (when < end)].reset_index(drop=True), int(when.isna().sum()))


def parse_times(values: pd.Series, timezone: str) -> pd.Series:
    """Timestamps as naive wall-clock times in `timezone` (values without an offset are UTC);
    what cannot be read is NaT, so it falls in no window."""
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    return parsed.dt.tz_convert(timezone).dt.tz_localize(None)
