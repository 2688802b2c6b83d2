"""Reading a `kind: nats` source: JSON events from a NATS JetStream subject through a durable
pull consumer, in micro-batches, acknowledged only when the caller says so (after its commit).

The stream and the consumer are created when missing (explicit acks; `ack_wait` from the
spec), so a first `jammi stream` works against an empty server. An event the caller cannot
take goes to the source's dead-letter subject with its reason in the `Jammi-Reason` header and
its stream sequence as `Nats-Msg-Id` (JetStream drops the copy a redelivery would publish again).
Every error names the source and has its credentials masked.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from jammi.errors import SourceError
from jammi.redact import redact
from jammi.spec.stream import NatsSpec

CONNECT_TIMEOUT_S = 2.0
REASON_HEADER = "Jammi-Reason"
SOURCE_HEADER = "Jammi-Source"
SEQ_HEADER = "Jammi-Stream-Seq"


class StreamUnavailable(SourceError):
    """The NATS server cannot be reached or answered with an error: worth retrying later."""


class ConsumerGone(StreamUnavailable):
    """The durable consumer this worker reads through was deleted (its stream deleted or
    re-created): connecting again creates it afresh."""


@dataclass
class Event:
    """One delivered message: its stream sequence, delivery count, publish time and payload."""

    seq: int
    deliveries: int
    published: float  # epoch seconds, as the server stamped it on arrival
    data: bytes
    msg: Any = field(repr=False, default=None)


@dataclass(frozen=True)
class Position:
    """Where the consumer stands: events not yet acknowledged, and the last delivered sequence."""

    lag: int
    delivered_seq: int


@functools.cache
def _nats() -> SimpleNamespace:
    """nats-py, imported where a consumer connects: with aiohttp under it, it costs a quarter of
    a second that importing the stream assets (every `jammi materialize`) need not pay."""
    import nats
    from nats.errors import Error, NoRespondersError
    from nats.errors import TimeoutError as Timeout
    from nats.js import api
    from nats.js.errors import NoStreamResponseError, NotFoundError

    return SimpleNamespace(connect=nats.connect, api=api, Error=Error, Timeout=Timeout,
                           NoResponders=NoRespondersError, NoStreamResponse=NoStreamResponseError,
                           NotFound=NotFoundError)


def _credentials(spec: NatsSpec) -> dict:
    given = {"user": spec.user, "password": spec.password, "token": spec.token}
    return {k: v for k, v in given.items() if v}


class NatsConsumer:
    """The durable pull consumer of one source; use `async with`."""

    def __init__(self, source: str, spec: NatsSpec, secrets: tuple[str, ...] = ()):
        self.source, self.spec = source, spec
        self.secrets = (*secrets, *(v for v in _credentials(spec).values()))
        self.nc = self.js = self.sub = None

    def _error(self, what: str, err: BaseException) -> StreamUnavailable:
        text = f"source {self.source!r}: {what} ({self.spec.servers}): {type(err).__name__}: {err}"
        return StreamUnavailable(redact(text, self.secrets))

    async def __aenter__(self) -> NatsConsumer:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self, bind: bool = True) -> None:
        n = _nats()

        async def quiet(_err):  # reconnects are the worker's business: it reports them itself
            return None

        try:
            self.nc = await n.connect(self.spec.server_list(), connect_timeout=CONNECT_TIMEOUT_S,
                                      max_reconnect_attempts=3, reconnect_time_wait=0.5,
                                      allow_reconnect=True, error_cb=quiet, **_credentials(self.spec))
            self.js = self.nc.jetstream()
            if bind:
                await self._ensure_stream()
                self.sub = await self.js.pull_subscribe(
                    self.spec.subject, durable=self.spec.durable, stream=self.spec.stream,
                    config=n.api.ConsumerConfig(durable_name=self.spec.durable,
                                                ack_policy=n.api.AckPolicy.EXPLICIT,
                                                ack_wait=self.spec.ack_wait_s,
                                                filter_subject=self.spec.subject))
        except (TimeoutError, n.Error, OSError) as err:
            await self.close()
            raise self._error("cannot connect to NATS", err) from None

    async def _ensure_stream(self) -> None:
        n = _nats()
        try:
            await self.js.stream_info(self.spec.stream)
        except n.NotFound:
            await self.js.add_stream(name=self.spec.stream, subjects=[self.spec.subject])

    async def close(self) -> None:
        n = _nats()
        if self.nc is not None and not self.nc.is_closed:
            try:
                await self.nc.close()
            except (TimeoutError, n.Error, OSError):
                pass
        self.nc = self.js = self.sub = None

    async def fetch(self, max_batch: int, max_wait_s: float, idle_s: float = 1.0) -> list[Event]:
        """Up to `max_batch` events: waits at most `idle_s` for the first one, then gathers more
        until `max_batch` are in hand or `max_wait_s` has passed since the first arrived."""
        n = _nats()
        events: list[Event] = []
        opened = None
        while len(events) < max_batch:
            if opened is None:
                wait = idle_s
            else:
                wait = max_wait_s - (time.monotonic() - opened)
                if wait <= 0.005:
                    break
            try:
                msgs = await self.sub.fetch(batch=max_batch - len(events), timeout=wait)
            except (n.Timeout, TimeoutError):  # nats-py raises either when nothing came in time
                if opened is None:
                    return events
                continue
            except (n.Error, OSError) as err:
                if events:  # keep what arrived; they are acked after their commit or redelivered
                    return events
                raise self._error("cannot fetch from NATS", err) from None
            if opened is None:
                opened = time.monotonic()
            events += [_event(m) for m in msgs]
        return events

    async def ack(self, events: list[Event]) -> None:
        n = _nats()
        try:
            for e in events:
                await e.msg.ack()
            await self.nc.flush(timeout=5)
        except (TimeoutError, n.Error, OSError) as err:
            raise self._error("cannot acknowledge events (they will be redelivered and skipped as "
                              "already committed)", err) from None

    async def nak(self, events: list[Event], delay_s: float) -> None:
        n = _nats()
        try:
            for e in events:
                await e.msg.nak(delay=delay_s)
        except (TimeoutError, n.Error, OSError):
            pass  # unacked events are redelivered after ack_wait anyway

    async def in_progress(self, events: list[Event]) -> None:
        """Tell the server these events are still being worked on (resets their ack_wait)."""
        n = _nats()
        try:
            for e in events:
                await e.msg.in_progress()
        except (TimeoutError, n.Error, OSError):
            pass

    async def dead_letter(self, event: Event, reason: str) -> None:
        """Publish the event, unchanged, to the dead-letter subject with its reason."""
        n = _nats()
        subject = self.spec.dead_letter(self.source)
        headers = {REASON_HEADER: reason.replace("\r", " ").replace("\n", " ")[:4000],
                   SOURCE_HEADER: self.source, SEQ_HEADER: str(event.seq),
                   "Nats-Msg-Id": f"{self.spec.stream}:{event.seq}"}
        try:
            try:
                await self.js.publish(subject, event.data, headers=headers, timeout=2)
            except (n.NoResponders, n.NoStreamResponse):  # no stream keeps the subject: plain publish
                await self.nc.publish(subject, event.data, headers=headers)
                await self.nc.flush(timeout=5)
        except (TimeoutError, n.Error, OSError) as err:
            raise self._error(f"cannot publish to the dead-letter subject {subject!r}", err) from None

    async def lag(self) -> int:
        """Events not yet acknowledged: pending delivery plus delivered and unacked."""
        return (await self.position()).lag

    async def position(self) -> Position:
        n = _nats()
        try:
            info = await self.js.consumer_info(self.spec.stream, self.spec.durable)
        except n.NotFound:
            if self.sub is not None:
                raise ConsumerGone(f"source {self.source!r}: the durable consumer {self.spec.durable!r} of "
                                   f"stream {self.spec.stream!r} is gone (stream deleted or re-created?); "
                                   "creating it again") from None
            try:
                return Position(int((await self.js.stream_info(self.spec.stream)).state.messages), 0)
            except n.NotFound:
                return Position(0, 0)
        except (TimeoutError, n.Error, OSError) as err:
            raise self._error("cannot read the consumer's state", err) from None
        delivered = info.delivered.stream_seq if info.delivered is not None else 0
        return Position(int(info.num_pending or 0) + int(info.num_ack_pending or 0), int(delivered or 0))


def _event(msg) -> Event:
    meta = msg.metadata
    return Event(seq=int(meta.sequence.stream), deliveries=int(meta.num_delivered),
                 published=meta.timestamp.timestamp(), data=msg.data, msg=msg)


async def _position(source: str, spec: NatsSpec, secrets: tuple[str, ...]) -> Position:
    consumer = NatsConsumer(source, spec, secrets)
    await consumer.connect(bind=False)
    try:
        return await consumer.position()
    finally:
        await consumer.close()


def consumer_position(source: str, spec: NatsSpec, secrets: tuple[str, ...] = ()) -> Position:
    """The consumer's lag and last delivered sequence, from outside a worker (the sensor)."""
    return asyncio.run(_position(source, spec, secrets))
