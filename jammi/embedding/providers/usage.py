"""What a provider's requests cost: counted as they happen, read as one snapshot per run."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

# refresh_log's provider columns, in order (jammi.tables.catalog)
USAGE_COLUMNS = ("requests", "tokens_sent", "retries", "rate_limited", "rate_limit_waits",
                 "rate_limit_wait_s", "estimated_cost", "tokens_avoided", "cost_avoided")


@dataclass(frozen=True)
class UsageSnapshot:
    """One run's provider figures. `requests` counts every HTTP request sent (retries included);
    `tokens_sent` the tokens of the requests that succeeded (what is billed: the service's own
    count where it reports one); `rate_limited` the 429 answers; `rate_limit_waits` and
    `rate_limit_wait_s` the waits for the declared RPM/TPM or a Retry-After; `tokens_avoided` the
    tokens of the texts the table already held vectors for (unchanged rows), not sent."""

    requests: int = 0
    tokens_sent: int = 0
    retries: int = 0
    rate_limited: int = 0
    rate_limit_waits: int = 0
    rate_limit_wait_s: float = 0.0
    estimated_cost: float | None = None
    tokens_avoided: int = 0
    cost_avoided: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def cost_of(tokens: int, price_per_million: float | None) -> float | None:
    """The estimated cost of `tokens` at the declared price (None when no price is declared)."""
    if price_per_million is None:
        return None
    return round(tokens * price_per_million / 1_000_000, 10)


class Usage:
    """Counters shared by a provider's request threads."""

    def __init__(self, price_per_million: float | None = None):
        self.price_per_million = price_per_million
        self._lock = threading.Lock()
        self._requests = self._tokens = self._retries = self._limited = self._waits = 0
        self._wait_s = 0.0

    def sent(self) -> None:
        with self._lock:
            self._requests += 1

    def succeeded(self, tokens: int) -> None:
        with self._lock:
            self._tokens += tokens

    def retried(self, rate_limited: bool = False) -> None:
        with self._lock:
            self._retries += 1
            self._limited += rate_limited

    def waited(self, seconds: float) -> None:
        with self._lock:
            self._waits += 1
            self._wait_s += seconds

    @property
    def tokens_sent(self) -> int:
        return self._tokens

    def snapshot(self, tokens_avoided: int = 0) -> UsageSnapshot:
        with self._lock:
            return UsageSnapshot(self._requests, self._tokens, self._retries, self._limited, self._waits,
                                 round(self._wait_s, 3), cost_of(self._tokens, self.price_per_million),
                                 tokens_avoided, cost_of(tokens_avoided, self.price_per_million))
