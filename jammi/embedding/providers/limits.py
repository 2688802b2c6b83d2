"""Client-side rate limits: requests and tokens per minute, spread evenly, and a pause that every
request thread honours after the service answered 429 with a Retry-After.

Each request reserves its start under a lock: no earlier than the previous request's start plus
60/RPM seconds, nor the previous start plus its tokens' share of the minute (tokens x 60/TPM),
nor the end of a pause. So over any stretch of a run the requests and tokens sent stay within
the declared rates, with no burst at the start of a minute for the service to refuse.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Paces request starts to `requests_per_minute` and `tokens_per_minute` (either may be None)."""

    def __init__(self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.request_gap = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self.token_gap = 60.0 / tokens_per_minute if tokens_per_minute else 0.0
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next_request = 0.0  # the earliest start of the next request
        self._next_tokens = 0.0
        self._paused_until = 0.0

    def reserve(self, tokens: int) -> float:
        """Reserve a start for a request of `tokens` tokens; the seconds to wait before it."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next_request, self._next_tokens, self._paused_until)
            self._next_request = start + self.request_gap
            self._next_tokens = start + tokens * self.token_gap
            return start - now

    def acquire(self, tokens: int) -> float:
        """Wait until a request of `tokens` tokens may start; the seconds waited."""
        waited = 0.0
        wait = self.reserve(tokens)
        while wait > 0:
            self._sleep(wait)
            waited += wait
            with self._lock:  # a pause declared while this request waited holds it too
                wait = self._paused_until - self._clock()
        return waited

    def pause(self, seconds: float) -> None:
        """No request starts for `seconds` (a 429's Retry-After), in any thread."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def paused_for(self) -> float:
        with self._lock:
            return max(0.0, self._paused_until - self._clock())
