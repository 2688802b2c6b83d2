"""The stream worker's figures: events per second, end-to-end latency (publish time to
searchable) p50/p95/p99, error rate, dead-lettered count and consumer lag; one status line,
and the same figures as `state/streams/<pipeline>.json` (a shared file: jammi.shared), which
`jammi status` shows from any node."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jammi.shared import json_files, shared_path, write_json
from jammi.store import Location
from jammi.tables.catalog import STATE_DIR

STREAMS_DIR = "streams"
LATENCY_WINDOW = 10_000  # the newest latencies the percentiles are taken over
RATE_WINDOW_S = 60.0


def status_path(artifact_dir: Path, pipeline: str) -> Location:
    return shared_path(artifact_dir, STATE_DIR, STREAMS_DIR, f"{pipeline}.json")


@dataclass
class StreamMetrics:
    pipeline: str
    source: str
    started: float = field(default_factory=time.time)
    events: int = 0  # events taken (committed, quarantined or dead-lettered)
    accepted: int = 0  # events whose rows are searchable
    quarantined: int = 0
    dead_lettered: int = 0
    failed_batches: int = 0  # batches that raised and were handed back for redelivery
    transient_errors: int = 0  # NATS unavailable, pipeline lock busy: retried
    batches: int = 0
    rows_added: int = 0
    rows_changed: int = 0
    rows_unchanged: int = 0
    lag: int = 0
    version: int | None = None
    table_name: str | None = None
    latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    recent: deque = field(default_factory=deque)  # (time, events) of the last RATE_WINDOW_S

    def record(self, result) -> None:
        """Add one committed batch (a jammi.app.stream.batch.BatchResult)."""
        now = time.time()
        self.batches += 1
        self.events += result.events
        self.accepted += result.accepted
        self.quarantined += result.quarantined
        self.dead_lettered += result.dead_lettered
        if result.appended is not None:
            self.rows_added += result.appended.added
            self.rows_changed += result.appended.changed
            self.rows_unchanged += result.appended.unchanged
            self.version = result.appended.version
        self.table_name = result.table_name or self.table_name
        self.lag = result.lag
        self.latencies.extend(result.latencies)
        self.recent.append((now, result.events))
        while self.recent and self.recent[0][0] < now - RATE_WINDOW_S:
            self.recent.popleft()

    def events_per_s(self) -> float:
        now = time.time()
        span = min(RATE_WINDOW_S, max(now - self.started, 1e-9))
        return sum(n for t, n in self.recent if t >= now - span) / span

    def snapshot(self) -> dict:
        lat = np.asarray(self.latencies, dtype=np.float64)
        pct = {f"p{q}_s": (round(float(np.percentile(lat, q)), 3) if len(lat) else None)
               for q in (50, 95, 99)}
        return {
            "pipeline": self.pipeline, "source": self.source, "events_per_s": round(self.events_per_s(), 2),
            **pct, "error_rate": round(self.dead_lettered / self.events, 4) if self.events else 0.0,
            "dead_lettered": self.dead_lettered, "quarantined": self.quarantined, "lag": self.lag,
            "events": self.events, "accepted": self.accepted, "batches": self.batches,
            "failed_batches": self.failed_batches, "transient_errors": self.transient_errors,
            "rows_added": self.rows_added, "rows_changed": self.rows_changed,
            "rows_unchanged": self.rows_unchanged, "table_name": self.table_name, "version": self.version,
            "started_at": self.started, "updated_at": time.time(),
        }


def status_line(snap: dict) -> str:
    def sec(v):
        return "-" if v is None else f"{v:.2f}s"

    return (f"stream {snap['pipeline']}: {snap['events_per_s']:.1f} events/s | "
            f"latency p50 {sec(snap['p50_s'])} p95 {sec(snap['p95_s'])} p99 {sec(snap['p99_s'])} | "
            f"errors {100 * snap['error_rate']:.1f}% | "
            f"dead-lettered {snap['dead_lettered']} | lag {snap['lag']} | {snap['events']} events, "
            f"{snap['batches']} batches, table v{snap['version'] if snap['version'] is not None else '-'}")


def write_status(artifact_dir: Path, snap: dict, state: str = "running") -> None:
    write_json(status_path(artifact_dir, snap["pipeline"]), {**snap, "state": state})


def read_statuses(artifact_dir: Path) -> list[dict]:
    """Every pipeline's last written stream figures (none when no worker ever ran)."""
    return json_files(shared_path(artifact_dir, STATE_DIR, STREAMS_DIR))
