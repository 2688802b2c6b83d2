"""Helpers of the stream tests: a unique JetStream stream per test on the local NATS server
(skipped, saying why, when it is unreachable), publishing events, reading the dead-letter
subject, and a project with one `kind: nats` source."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import write_project

NATS_URL = "nats://127.0.0.1:4222"
COLUMNS = {"id": {"type": "int", "nullable": False},
           "title": {"type": "str", "nullable": False, "max_length": 200},
           "topic": {"type": "str", "isin": ["world", "sport", "tech"]}}
TOPICS = ["world", "sport", "tech"]


def run(coro):
    return asyncio.run(coro)


async def _connect():
    import nats

    return await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)


def require_nats() -> None:
    pytest.importorskip("nats")

    async def probe():
        nc = await _connect()
        await nc.close()

    try:
        run(probe())
    except Exception as err:  # any failure to reach the server: skip with the reason
        pytest.skip(f"NATS JetStream at {NATS_URL} is unreachable: {type(err).__name__}: {err}")


class Stream:
    """A fresh stream `<NAME>` on subject `<name>.events` and a dead-letter stream that keeps
    `<name>.dead`; both deleted by `delete()`."""

    def __init__(self):
        token = uuid.uuid4().hex[:10]
        self.name, self.subject = f"T{token}", f"t{token}.events"
        self.dead_subject, self.dead_stream = f"t{token}.dead", f"T{token}_DEAD"
        self.durable = f"d{token}"

        async def create():
            nc = await _connect()
            js = nc.jetstream()
            await js.add_stream(name=self.name, subjects=[self.subject])
            await js.add_stream(name=self.dead_stream, subjects=[self.dead_subject])
            await nc.close()

        run(create())

    def nats_block(self, **extra) -> dict:
        return {"servers": NATS_URL, "subject": self.subject, "stream": self.name, "durable": self.durable,
                "dead_letter_subject": self.dead_subject, **extra}

    def publish(self, payloads: list[bytes]) -> None:
        async def go():
            nc = await _connect()
            js = nc.jetstream()
            for p in payloads:
                await js.publish(self.subject, p)
            await nc.close()

        run(go())

    def dead_letters(self) -> list[tuple[int, str]]:
        """(original stream sequence, reason) of every message on the dead-letter subject."""
        async def go():
            nc = await _connect()
            js = nc.jetstream()
            info = await js.stream_info(self.dead_stream)
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                if info.state.messages == 0:
                    break
                msg = await js.get_msg(self.dead_stream, seq)
                found.append((int(msg.headers["Jammi-Stream-Seq"]), msg.headers["Jammi-Reason"]))
            await nc.close()
            return found

        return run(go())

    def delete(self) -> None:
        async def go():
            nc = await _connect()
            js = nc.jetstream()
            for name in (self.name, self.dead_stream):
                try:
                    await js.delete_stream(name)
                except Exception:  # already gone
                    pass
            await nc.close()

        run(go())


def event(i: int, *, topic: str | None = None, title: str | None = None) -> bytes:
    return json.dumps({"id": i, "title": title or f"headline {i} about {TOPICS[i % 3]} matters",
                       "topic": topic or TOPICS[i % 3]}).encode()


def stream_project(root: Path, stream: Stream, **nats_extra):
    return write_project(root, sources={"news": {"kind": "nats", "key": "id", "columns": COLUMNS,
                                                 "nats": stream.nats_block(**nats_extra)}},
                         pipelines={"news_titles": {"source": "news", "text_columns": ["title"]}})
