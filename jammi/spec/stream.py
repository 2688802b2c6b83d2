"""What a stream source declares: where its events come from (a NATS JetStream subject read
through a durable pull consumer), how they are micro-batched, and where events that cannot be
taken go (the dead-letter subject).

    sources:
      news:
        kind: nats
        key: id
        columns: {id: str, title: str, body: str}
        nats:
          servers: nats://${NATS_USER}:${NATS_PASSWORD}@127.0.0.1:4222
          subject: news.events
          stream: NEWS
          durable: jammi_news
          max_batch: 100        # rows per micro-batch
          max_wait_ms: 500      # a batch closes this long after its first event at the latest
          max_deliver: 5        # an event failing this many times goes to the dead-letter subject
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_SERVERS = "nats://127.0.0.1:4222"
_TOKEN = r"^[A-Za-z0-9_-]+$"  # JetStream stream and consumer names: no dots, spaces or wildcards


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class NatsSpec(_Strict):
    """A JetStream subject read by a durable pull consumer, in micro-batches."""

    subject: str = Field(min_length=1, pattern=r"^[^\s]+$")
    stream: str = Field(pattern=_TOKEN)
    durable: str = Field(pattern=_TOKEN)
    servers: str = DEFAULT_SERVERS  # comma-separated URLs; credentials may be ${VAR}s
    user: str | None = None
    password: str | None = None
    token: str | None = None
    dead_letter_subject: str | None = Field(default=None, pattern=r"^[^\s*>]+$")
    max_batch: int = Field(default=100, ge=1, le=10_000)
    max_wait_ms: int = Field(default=500, ge=1, le=600_000)
    max_deliver: int = Field(default=5, ge=1, le=1000)
    ack_wait_s: float = Field(default=60.0, gt=0)  # unacked longer than this: redelivered
    lag_threshold: int = Field(default=1000, ge=1)  # stream_sensor requests a run past this many pending
    status_every_s: float = Field(default=10.0, gt=0)

    def server_list(self) -> list[str]:
        return [s.strip() for s in self.servers.split(",") if s.strip()]

    def dead_letter(self, source: str) -> str:
        return self.dead_letter_subject or f"jammi.dead_letter.{source}"
