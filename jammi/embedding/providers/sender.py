"""Sending texts to an embedding service: packed into requests by text count and token budget,
up to `max_concurrency` requests in flight, each start paced by the rate limiter.

A 429 pauses every request thread for its Retry-After (or an exponential back-off when it gives
none) and is retried; a 5xx, a timeout or a dropped connection is retried after an exponential
back-off with jitter, at most `max_retries` times in a row for one request. A request whose
input the service refuses (400, 413, 422) is split in halves until the text it refuses is alone:
that text gets a per-row error and every other text its vector. A run fails, with an error that
says why, when a request keeps failing, when no request has succeeded for `stall_timeout_s`, or
when the service refuses credentials, the model or every text tried.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from jammi.embedding.providers.limits import RateLimiter
from jammi.embedding.providers.usage import Usage
from jammi.errors import ProviderError

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
REFUSED_ALONE_FATAL = 8  # texts refused one by one before any success: the request, not the texts


class Refused(Exception):
    """The service refused a request's input (HTTP 400, 413, 422)."""


class RateLimited(Exception):
    """HTTP 429; `retry_after` in seconds when the service said."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Transient(Exception):
    """A 5xx, a timeout or a dropped connection: worth another try."""


class Fatal(Exception):
    """Every request would fail the same way (credentials, model, endpoint, a malformed answer)."""


# one request: texts -> (their vectors as the service sent them, the tokens it counted or None)
Call = Callable[[list[str]], tuple[np.ndarray, int | None]]


@dataclass(frozen=True)
class SendSettings:
    max_batch_texts: int = 256
    max_batch_tokens: int = 8000
    max_concurrency: int = 4
    max_retries: int = 6
    stall_timeout_s: float = 300.0
    backoff_base_s: float = BACKOFF_BASE_S
    backoff_cap_s: float = BACKOFF_CAP_S


def pack(counts: list[int], max_texts: int, max_tokens: int) -> list[list[int]]:
    """Positions of consecutive texts grouped into requests of at most `max_texts` texts and
    `max_tokens` tokens (a text over the budget alone goes in a request of its own)."""
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i, n in enumerate(counts):
        if current and (len(current) == max_texts or tokens + n > max_tokens):
            batches.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += n
    if current:
        batches.append(current)
    return batches


@dataclass
class Sent:
    vectors: list[np.ndarray | None]  # per text, as the service sent it; None where refused
    errors: list[str | None]
    latency_ms: np.ndarray


class Sender:
    """Sends texts through `call` (see the module docstring); `where` names the service in errors
    and `mask` hides its credentials in them."""

    def __init__(self, call: Call, settings: SendSettings, limiter: RateLimiter, usage: Usage, where: str,
                 mask: Callable[[str], str] = str, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None):
        self.call, self.settings, self.limiter, self.usage = call, settings, limiter, usage
        self.where, self.mask, self.clock = where, mask, clock
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_success = clock()
        self._last_error = ""
        self._successes = 0
        self._refused_alone = 0

    def send(self, texts: list[str], counts: list[int]) -> Sent:
        n = len(texts)
        out = Sent([None] * n, [None] * n, np.zeros(n, dtype=np.float64))
        if not n:
            return out
        s = self.settings
        batches = pack(counts, s.max_batch_texts, s.max_batch_tokens)
        self._stop.clear()
        with self._lock:
            self._last_success = max(self._last_success, self.clock())
        if len(batches) == 1 or s.max_concurrency == 1:
            for batch in batches:
                self._send(texts, counts, batch, out)
            return out
        with ThreadPoolExecutor(max_workers=min(s.max_concurrency, len(batches)),
                                thread_name_prefix="jammi-provider") as pool:
            futures = [pool.submit(self._send, texts, counts, batch, out) for batch in batches]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in done if f.exception() is not None), None)
            if failed is not None:
                self._stop.set()  # the other threads stop at their next attempt or wait
                for f in futures:
                    f.cancel()
                raise failed.exception()
        return out

    def _send(self, texts: list[str], counts: list[int], batch: list[int], out: Sent) -> None:
        parts = [batch]
        while parts:
            part = parts.pop()
            t0 = time.perf_counter()
            try:
                vectors = self._attempt([texts[i] for i in part], sum(counts[i] for i in part))
            except Refused as err:
                if len(part) > 1:  # halves, the first sent first
                    half = len(part) // 2
                    parts += [part[half:], part[:half]]
                    continue
                self._refused_alone_once(str(err))
                out.errors[part[0]] = f"refused by the service: {self.mask(str(err))}"[:500]
                continue
            out.latency_ms[part] = (time.perf_counter() - t0) * 1000.0
            for i, vector in zip(part, vectors, strict=True):
                out.vectors[i] = vector

    def _refused_alone_once(self, message: str) -> None:
        with self._lock:
            self._refused_alone += 1
            hopeless = self._successes == 0 and self._refused_alone >= REFUSED_ALONE_FATAL
        if hopeless:
            raise ProviderError(f"{self.where}: the service refused each of the first {REFUSED_ALONE_FATAL} "
                                f"texts sent alone ({self.mask(message)}); the request itself is refused: "
                                "check provider.model, dimensions and base_url")

    def _attempt(self, texts: list[str], tokens: int) -> np.ndarray:
        """One request, retried until it succeeds, is refused, or the run cannot make progress."""
        failures = limited = 0
        while True:
            self._check_progress()
            waited = self.limiter.acquire(tokens)
            if waited > 0.001:
                self.usage.waited(waited)
            self._check_progress()
            self.usage.sent()
            try:
                vectors, reported = self.call(texts)
            except RateLimited as err:
                limited += 1
                self.usage.retried(rate_limited=True)
                self._note(f"HTTP 429: {err}")
                pause = err.retry_after if err.retry_after else self._backoff(limited)  # none, or 0
                left = self.settings.stall_timeout_s - (self.clock() - self._last_success)
                if pause > left:
                    raise ProviderError(
                        f"{self.where}: rate-limited (HTTP 429) with Retry-After {pause:.0f}s, past "
                        f"provider.stall_timeout_s ({self.settings.stall_timeout_s:.0f}s) without progress; "
                        "lower requests_per_minute or tokens_per_minute") from None
                # at least what the service asked for, a little more so threads do not return at once
                self.limiter.pause(pause * (1.0 + 0.1 * self.rng.random()))
                continue
            except Transient as err:
                failures += 1
                self._note(str(err))
                if failures > self.settings.max_retries:
                    raise ProviderError(f"{self.where}: a request failed {failures} times in a row, the last "
                                        f"with {self.mask(str(err))}; the service cannot make progress "
                                        f"(provider.max_retries: {self.settings.max_retries})") from None
                self.usage.retried()
                self._sleep(self._backoff(failures))
                continue
            except Fatal as err:
                raise ProviderError(f"{self.where}: {self.mask(str(err))}") from None
            with self._lock:
                self._last_success = self.clock()
                self._successes += 1
            self.usage.succeeded(reported if reported else tokens)
            return vectors

    def _note(self, message: str) -> None:
        with self._lock:
            self._last_error = self.mask(message)[:300]

    def _check_progress(self) -> None:
        if self._stop.is_set():
            raise ProviderError(f"{self.where}: stopped: another request of the run failed")
        with self._lock:
            idle = self.clock() - self._last_success
            last = self._last_error
        if idle > self.settings.stall_timeout_s:
            raise ProviderError(f"{self.where}: no request has succeeded for {idle:.0f}s (provider."
                                f"stall_timeout_s: {self.settings.stall_timeout_s:.0f}); the run cannot make "
                                f"progress; last error: {last or 'none'}")

    def _backoff(self, attempt: int) -> float:
        """Exponential back-off with jitter: half of the step, plus up to the other half at random."""
        step = min(self.settings.backoff_cap_s, self.settings.backoff_base_s * 2 ** (attempt - 1))
        return step / 2 + self.rng.uniform(0, step / 2)

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)  # a failed run wakes its sleepers
