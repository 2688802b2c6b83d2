"""What a source or pipeline declares about when it runs: partitions, a refresh schedule,
freshness, and the watermark of an incremental PostgreSQL extract.

    partitions: {by: created_at, granularity: day, start: "2026-11-01"}   # a timestamp column
    partitions: {by: "{date}", granularity: day, start: "2026-11-01"}     # a path segment
    partitions: {dynamic: files}                                          # one per landed file
    refresh: {cron: "0 * * * *", timezone: "UTC"}
    freshness: {max_lag: 2h}
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

PATH_SEGMENT = "{date}"
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `1d`, `1w`."""
    found = _DURATION.match(str(text))
    if not found:
        raise ValueError(f"{text!r} is not a duration; write e.g. 30m, 2h or 1d")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


class PartitionSpec(_Strict):
    """Time windows over a timestamp column or a `{date}` path segment, or dynamic partitions."""

    by: str | None = None
    granularity: Literal["hour", "day", "week", "month"] = "day"
    start: str | None = None
    end: str | None = None  # no partitions from here on (exclusive); default: open-ended
    timezone: str = "UTC"
    dynamic: Literal["files", "batches"] | None = None

    @model_validator(mode="after")
    def _check(self) -> PartitionSpec:
        if bool(self.by) == bool(self.dynamic):
            raise ValueError("partitions: declare exactly one of 'by' (a timestamp column or "
                             "'{date}' in the path) or 'dynamic' (files | batches)")
        if self.by:
            if not self.start:
                raise ValueError("partitions: time partitions need 'start' (e.g. \"2026-11-01\")")
            for name, value in (("start", self.start), ("end", self.end)):
                try:
                    value is None or datetime.fromisoformat(value)
                except ValueError:
                    raise ValueError(f"partitions.{name}: {value!r} is not an ISO date or "
                                     "timestamp (e.g. 2026-11-01)") from None
            if self.end and datetime.fromisoformat(self.end) <= datetime.fromisoformat(self.start):
                raise ValueError(f"partitions.end {self.end!r} is not after start {self.start!r}")
        return self

    @property
    def by_path(self) -> bool:
        return self.by == PATH_SEGMENT



class RefreshSpec(_Strict):
    """A cron schedule; for a time-partitioned source it runs the partition that just closed."""

    cron: str
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"refresh.cron: {value!r} is not a five-field cron expression "
                             "(e.g. \"0 * * * *\")")
        return value


class FreshnessSpec(_Strict):
    """The longest a materialization may be old before the asset counts as stale."""

    max_lag: str
    warn_lag: str | None = None

    @field_validator("max_lag", "warn_lag")
    @classmethod
    def _lag(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def max_lag_delta(self) -> timedelta:
        return parse_duration(self.max_lag)

    @property
    def warn_lag_delta(self) -> timedelta | None:
        return parse_duration(self.warn_lag) if self.warn_lag else None


# partition keys as Dagster's time-window partitions spell them
KEY_FORMATS = {"hour": "%Y-%m-%d-%H:%M", "day": "%Y-%m-%d", "week": "%Y-%m-%d", "month": "%Y-%m-%d"}


def partition_window(spec: PartitionSpec, key: str) -> tuple[datetime, datetime]:
    """[start, end) of time partition `key` (naive, in the partition's timezone)."""
    try:
        start = datetime.strptime(key, KEY_FORMATS[spec.granularity])
    except ValueError:
        raise ValueError(f"partition {key!r} is not a {spec.granularity} partition key "
                         f"(expected like {datetime(2026, 11, 3).strftime(KEY_FORMATS[spec.granularity])})"
                         ) from None
    if spec.granularity == "hour":
        return start, start + timedelta(hours=1)
    if spec.granularity == "day":
        return start, start + timedelta(days=1)
    if spec.granularity == "week":
        return start, start + timedelta(days=7)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start, start.replace(year=year, month=month)


def partition_start(spec: PartitionSpec) -> datetime:
    return datetime.fromisoformat(spec.start)
