"""`jammi stream PIPELINE`: the long-running worker of a stream source, and the single
micro-batch a Dagster run takes (the same `take_batch`).

The worker loads the model once, then pulls micro-batches (`max_batch` events, or what came in
`max_wait_ms` after the first), commits each (jammi.app.stream.batch), dead-letters the rejected
events, acknowledges the batch and reports it (`on_commit`: the Dagster layer plugs in its
runless materializations). Transient errors (NATS unavailable, another writer holding the
pipeline's table) are retried with exponential backoff and jitter; a batch that fails otherwise
is handed back (nak) and its events come again, up to `max_deliver` times, then go to the
dead-letter subject. `stop` (set on SIGTERM or SIGINT) ends the loop after the batch in hand.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from jammi.app.stream.batch import BatchCommitter, BatchResult
from jammi.app.stream.metrics import StreamMetrics, status_line, write_status
from jammi.embedding.model import Encoder
from jammi.errors import JammiError
from jammi.ingest.nats_stream import ConsumerGone, Event, NatsConsumer, StreamUnavailable
from jammi.redact import redact
from jammi.spec.project import Project
from jammi.tables.catalog import PipelineBusy

BACKOFF_BASE_S = 0.2
BACKOFF_MAX_S = 10.0
IDLE_POLL_S = 1.0

Echo = Callable[[str], None]
OnCommit = Callable[[BatchResult], None]


@dataclass
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(max, base * 2^n))."""

    base: float = BACKOFF_BASE_S
    cap: float = BACKOFF_MAX_S
    attempts: int = 0

    def next(self) -> float:
        delay = random.uniform(0, min(self.cap, self.base * 2 ** self.attempts))
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0


async def _sleep(seconds: float, stop: threading.Event) -> None:
    end = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < end:
        await asyncio.sleep(min(0.1, end - time.monotonic()))


def stream_pipeline_of(project: Project, name: str) -> str:
    """`name` is a pipeline over a stream source, or a stream source with its one pipeline."""
    if name in project.pipelines:
        pipeline = name
    else:
        found = [p for p, pipe in project.pipelines.items() if pipe.source == name]
        if name not in project.sources or not found:
            declared = ", ".join(project.pipelines) or "none"
            raise JammiError(f"unknown pipeline {name!r} (declared: {declared})")
        pipeline = found[0]
    src = project.sources.get(project.pipelines[pipeline].source)
    if src is None or src.kind != "nats":
        raise JammiError(f"pipeline {pipeline!r} reads source {project.pipelines[pipeline].source!r}, "
                         "which is not a stream (kind: nats); run `jammi materialize` instead")
    return pipeline


class StreamWorker:
    def __init__(self, project: Project, pipeline: str, encoder: Encoder, *, echo: Echo = print,
                 on_commit: OnCommit | None = None, stop: threading.Event | None = None,
                 status_every_s: float | None = None):
        self.project, self.pipeline = project, stream_pipeline_of(project, pipeline)
        self.source = project.pipelines[self.pipeline].source
        self.spec = project.sources[self.source].nats
        self.committer = BatchCommitter(project, self.pipeline, encoder)
        self.echo, self.on_commit = echo, on_commit
        self.stop = stop or threading.Event()
        self.status_every_s = status_every_s or self.spec.status_every_s
        self.metrics = StreamMetrics(self.pipeline, self.source)
        self.consumer = NatsConsumer(self.source, self.spec, project.secrets)
        self.backoff = Backoff()

    def _say(self, text: str) -> None:
        self.echo(redact(text, self.consumer.secrets))

    async def take_batch(self, events: list[Event]) -> BatchResult | None:
        """Commit, dead-letter and acknowledge one batch; None when it was handed back."""
        lock_wait = Backoff()
        while True:
            try:
                result = self.committer.commit(events)
                break
            except PipelineBusy as busy:
                self.metrics.transient_errors += 1
                if self.stop.is_set():
                    await self.consumer.nak(events, 0)
                    return None
                if lock_wait.attempts == 0:
                    self._say(f"{busy}; retrying")
                await self.consumer.in_progress(events)
                await _sleep(lock_wait.next(), self.stop)
            except (JammiError, OSError, ValueError) as err:
                self.metrics.failed_batches += 1
                delay = self.backoff.next()
                self._say(f"stream {self.pipeline}: batch of {len(events)} event(s) failed, handed back for "
                          f"redelivery in {delay:.1f}s: {err}")
                await self.consumer.nak(events, delay)
                return None
        for r in result.rejected:
            await self.consumer.dead_letter(r.event, r.reason)
            result.dead_lettered += 1
        await self.consumer.ack(events)
        result.lag = events[-1].msg.metadata.num_pending if events[-1].msg is not None else 0
        self.backoff.reset()
        self.metrics.record(result)
        if self.on_commit is not None:
            try:
                self.on_commit(result)
            except Exception as err:  # reporting must never stop the stream
                self._say(f"stream {self.pipeline}: could not report the batch: {type(err).__name__}: {err}")
        return result

    async def run(self, max_batches: int | None = None, idle_exit_s: float | None = None) -> StreamMetrics:
        """Until `stop` is set (or `max_batches` batches, or `idle_exit_s` with nothing to read)."""
        next_status = time.monotonic() + self.status_every_s
        idle_since = time.monotonic()
        try:
            while not self.stop.is_set():
                try:
                    if self.consumer.nc is None:
                        await self.consumer.connect()
                        self._say(f"stream {self.pipeline}: reading {self.spec.subject!r} (stream "
                                  f"{self.spec.stream}, consumer {self.spec.durable}) from "
                                  f"{self.spec.servers}")
                    events = await self.consumer.fetch(self.spec.max_batch, self.spec.max_wait_ms / 1000,
                                                       IDLE_POLL_S)
                    if events:
                        idle_since = time.monotonic()
                        await self.take_batch(events)
                    if time.monotonic() >= next_status:
                        next_status = time.monotonic() + self.status_every_s
                        await self._status()
                except StreamUnavailable as err:
                    self.metrics.transient_errors += 1
                    await self.consumer.close()
                    delay = self.backoff.next()
                    self._say(f"{err}; retrying in {delay:.1f}s")
                    await _sleep(delay, self.stop)
                if max_batches is not None and self.metrics.batches >= max_batches:
                    break
                if idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                    break
            await self._status(final=True)
        finally:
            await self.consumer.close()
        return self.metrics

    async def _status(self, final: bool = False) -> None:
        if self.consumer.nc is not None:
            try:
                self.metrics.lag = await self.consumer.lag()
            except ConsumerGone:
                if not final:
                    raise
            except StreamUnavailable:
                pass
        snap = self.metrics.snapshot()
        write_status(self.project.artifact_dir, snap, "stopped" if final else "running")
        self._say(status_line(snap) + (" (stopped)" if final else ""))


def run_worker(project: Project, pipeline: str, encoder: Encoder, **options) -> StreamMetrics:
    """Run the worker in this thread until its `stop` event is set (see StreamWorker)."""
    limits = {k: options.pop(k) for k in ("max_batches", "idle_exit_s") if k in options}
    worker = StreamWorker(project, pipeline, encoder, **options)
    # the model loads once, before the first batch, and runs once so that the first batch's
    # latency is not the warm-up's
    size = worker.committer.pipe.batch_size
    encoder.encode([f"warm-up text {i}" for i in range(size if isinstance(size, int) else 32)])
    return asyncio.run(worker.run(**limits))


async def _one_batch(worker: StreamWorker) -> BatchResult | None:
    spec = worker.spec
    try:
        await worker.consumer.connect()
        events = await worker.consumer.fetch(spec.max_batch, spec.max_wait_ms / 1000, spec.max_wait_ms / 1000)
        result = await worker.take_batch(events) if events else None
        if result is None and events:
            raise JammiError(f"stream {worker.pipeline}: the micro-batch failed and was handed back")
        return result
    finally:
        await worker.consumer.close()


def run_micro_batch(project: Project, pipeline: str, encoder: Encoder,
                    echo: Echo = print) -> BatchResult | None:
    """One micro-batch, as a Dagster run takes it (None when no event was waiting)."""
    worker = StreamWorker(project, pipeline, encoder, echo=echo)
    return asyncio.run(_one_batch(worker))
