"""One partition of a partitioned source: the file its `{date}` path segment names, the file a
dynamic `files` partition is, or the rows whose timestamp column falls in its window."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from jammi.errors import SourceError
from jammi.ingest.extract import extract_batches, source_files
from jammi.spec.automation import PATH_SEGMENT, partition_window
from jammi.spec.project import Project


@dataclass
class PartitionBatches:
    """The batches of one partition's rows; `unplaced` counts, once they are read, the rows
    of the source whose timestamp cannot be read (they fall in no partition)."""

    batches: Iterator[pd.DataFrame]
    unplaced: int = 0


def partition_batches(project: Project, name: str, partition: str) -> PartitionBatches:
    """The rows of one partition of source `name`, batch by batch: its own file when the path
    names the partition (or a dynamic partition is a file), else the source's rows whose
    timestamp falls in the partition's window (the whole source is read, a batch at a time)."""
    spec = project.sources[name]
    part = spec.partitions
    if part is None:
        raise SourceError(f"source {name!r} is not partitioned; materialize it without a partition")
    if part.dynamic == "files":
        matches = [f for f in source_files(project, name, spec) if f.name == partition]
        if not matches:
            raise SourceError(f"source {name!r}: partition {partition!r} names no file matched by "
                              f"{spec.path!r}")
        one = spec.model_copy(update={"path": str(matches[0])})
        return PartitionBatches(extract_batches(project, name, one))
    try:
        start, end = partition_window(part, partition)
    except ValueError as err:
        raise SourceError(f"source {name!r}: {err}") from None
    if part.by_path:
        path = spec.path.replace(PATH_SEGMENT, partition)
        return PartitionBatches(extract_batches(project, name, spec.model_copy(update={"path": path})))
    got = PartitionBatches(iter(()))

    def window() -> Iterator[pd.DataFrame]:
        for rows in extract_batches(project, name):
            when = parse_times(rows[part.by], part.timezone)
            got.unplaced += int(when.isna().sum())
            yield rows[((when >= start) & (when < end)).to_numpy()].reset_index(drop=True)

    got.batches = window()
    return got


def parse_times(values: pd.Series, timezone: str) -> pd.Series:
    """Timestamps as naive wall-clock times in `timezone` (values without an offset are UTC);
    what cannot be read is NaT, so it falls in no window."""
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    return parsed.dt.tz_convert(timezone).dt.tz_localize(None)
