"""The OpenAI embeddings API (`POST {base_url}/embeddings`) through the official `openai` client,
as an Encoder: OpenAI itself or any server speaking the same API (TEI, Infinity, vLLM, Ollama,
LiteLLM, Azure OpenAI's v1 endpoint).

The client's own retries are off (`max_retries=0`): jammi.embedding.providers.sender retries,
counts and paces every request itself. Vectors come back base64-encoded float32 (plain float
lists are taken too), are checked for count and dimensions, and are L2-normalised.
"""

from __future__ import annotations

import base64
import email.utils
import os
import threading
import time

import numpy as np

from jammi.embedding.providers.counting import TokenCounter
from jammi.embedding.providers.limits import RateLimiter
from jammi.embedding.providers.sender import (
    Fatal,
    RateLimited,
    Refused,
    Sender,
    SendSettings,
    Transient,
)
from jammi.embedding.providers.usage import Usage
from jammi.errors import ConfigError, EmbeddingError, ProviderError
from jammi.redact import redact
from jammi.spec.provider import OPENAI_BASE_URL, ProviderSpec

KEY_ENV = "OPENAI_API_KEY"
NO_KEY = "no-key"  # a local server that checks no key still gets an Authorization header
REFUSED_STATUS = (400, 413, 422)  # the request's input: split it to find the text
RETRIED_STATUS = (408, 409)  # with every 5xx


def retry_after(headers) -> float | None:
    """Seconds a 429 asks to wait: `retry-after-ms`, `retry-after` in seconds or as an HTTP date."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return None


class OpenAIProvider:
    """An Encoder whose texts are embedded by an OpenAI-compatible service (see the module
    docstring). `usage` counts this instance's requests, tokens, retries and waits."""

    backend = "openai"
    device = "provider"

    def __init__(self, spec: ProviderSpec, secrets: tuple[str, ...] = (),
                 settings: SendSettings | None = None):
        self.spec = spec
        self.model_id = spec.model_id
        key = spec.api_key.get_secret_value() if spec.api_key is not None else os.environ.get(KEY_ENV)
        if not key:
            if spec.base_url == OPENAI_BASE_URL:
                raise ConfigError(f"provider {spec.model!r}: no API key: set provider.api_key (e.g. "
                                  f"${{{KEY_ENV}}}) or the {KEY_ENV} environment variable")
            key = NO_KEY
        self._key = key
        self._secrets = tuple(s for s in (key, *secrets) if s and s != NO_KEY)
        self.where = f"provider {spec.kind} {spec.model!r} at {redact(spec.base_url)}"
        self.usage = Usage(spec.price_per_million_tokens)
        self.limiter = RateLimiter(spec.requests_per_minute, spec.tokens_per_minute)
        self.settings = settings or SendSettings(spec.max_batch_texts, spec.max_batch_tokens,
                                                 spec.max_concurrency, spec.max_retries, spec.stall_timeout_s)
        self._sender = Sender(self._call, self.settings, self.limiter, self.usage, self.where, self.mask)
        self._dimensions = spec.dimensions
        self._counter: TokenCounter | None = None
        self._client = None
        self._lock = threading.Lock()
        self.loaded = False  # true once a request was sent

    def mask(self, text: str) -> str:
        """`text` with the API key (and the project's expanded secrets) masked."""
        return redact(text, self._secrets)

    @property
    def counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = TokenCounter(self.spec)
        return self._counter

    @property
    def max_seq_length(self) -> int:
        return self.counter.window

    @property
    def dimensions(self) -> int:
        """The declared dimensions, else those of a one-text request (sent once)."""
        if self._dimensions is None:
            self.encode(["dimension probe"])
        return self._dimensions

    def token_counts(self, texts: list[str]) -> list[int]:
        return self.counter.counts(texts)

    def encode_many(self, texts: list[str]) -> tuple[np.ndarray, list[str | None], np.ndarray]:
        """Unit vectors of `texts` in order, a per-row error where the service refused a text (its
        row is zero), and the milliseconds of the request each text was in."""
        fitted = self.counter.fit(texts)
        sent = self._sender.send(fitted.texts, fitted.counts)
        errors = list(sent.errors)
        vectors = np.zeros((len(texts), self._dimensions or 0), dtype=np.float32)
        for i, vector in enumerate(sent.vectors):
            if vector is None:
                continue
            norm = float(np.linalg.norm(vector))
            if not np.isfinite(norm) or norm == 0.0:
                errors[i] = "the service returned a zero or non-finite vector"
                continue
            vectors[i] = vector / norm
        return vectors, errors, sent.latency_ms

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of `texts`; EmbeddingError when the service refuses one of them."""
        vectors, errors, _ = self.encode_many(texts)
        failed = [i for i, e in enumerate(errors) if e]
        if failed:
            raise EmbeddingError(f"{self.where}: {len(failed)} text(s) could not be embedded "
                                 f"({errors[failed[0]]}); first: {texts[failed[0]][:80]!r}")
        return vectors

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                import openai

                self._client = openai.OpenAI(api_key=self._key, base_url=self.spec.base_url,
                                             timeout=self.spec.timeout_s, max_retries=0)
            return self._client

    def _call(self, texts: list[str]) -> tuple[np.ndarray, int | None]:
        """One request; raises the sender's Refused, RateLimited, Transient or Fatal."""
        import openai

        self.loaded = True
        extra = {"dimensions": self.spec.dimensions} if self.spec.dimensions else {}
        try:
            raw = self.client.embeddings.with_raw_response.create(
                model=self.spec.model, input=texts, encoding_format="base64", **extra)
            response = raw.parse()
        except openai.RateLimitError as err:
            raise RateLimited(_message(err), retry_after(err.response.headers)) from None
        except openai.APIStatusError as err:
            status = err.status_code
            if status >= 500 or status in RETRIED_STATUS:
                raise Transient(f"HTTP {status}: {_message(err)}") from None
            if status in REFUSED_STATUS:
                raise Refused(f"HTTP {status}: {_message(err)}") from None
            hint = {401: "check provider.api_key", 403: "check provider.api_key's permissions",
                    404: "check provider.base_url and provider.model"}.get(status, "")
            raise Fatal(f"HTTP {status}: {_message(err)}" + (f"; {hint}" if hint else "")) from None
        except openai.APITimeoutError:
            raise Transient(f"no answer within {self.spec.timeout_s:g}s (provider.timeout_s)") from None
        except openai.APIConnectionError as err:
            raise Transient(f"connection failed: {_cause(err)}") from None
        except openai.APIError as err:  # an answer the client could not read
            raise Transient(f"unreadable answer: {_message(err)}") from None
        return self._vectors(response, len(texts))

    def _vectors(self, response, n: int) -> tuple[np.ndarray, int | None]:
        data = sorted(response.data or [], key=lambda d: d.index)
        if len(data) != n:
            raise Fatal(f"the service returned {len(data)} vectors for {n} texts")
        rows = [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") if isinstance(d.embedding, str)
                else np.asarray(d.embedding, dtype=np.float32) for d in data]
        dims = {len(r) for r in rows}
        with self._lock:
            if self._dimensions is None and len(dims) == 1:
                self._dimensions = dims.pop()
            expected = self._dimensions
        if any(len(r) != expected for r in rows):
            declared = "provider.dimensions" if self.spec.dimensions else "its first answer"
            raise Fatal(f"the service returned {sorted({len(r) for r in rows})}-dimensional vectors, "
                        f"{expected} expected ({declared})")
        usage = getattr(response, "usage", None)
        reported = getattr(usage, "prompt_tokens", None) or getattr(usage, "total_tokens", None)
        # the model's own tokenizer counts exactly; some servers report characters as tokens
        return np.stack(rows).astype(np.float32, copy=False), None if self.counter.exact else reported

    def describe(self) -> str:
        return self.where


def _message(err) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        text = inner.get("message") or inner.get("detail")
        if text:
            return str(text)[:300]
    return str(getattr(err, "message", err))[:300]


def _cause(err: BaseException) -> str:
    cause = err.__cause__ or err.__context__
    return f"{type(cause).__name__}: {cause}"[:200] if cause is not None else str(err)


def load_provider(spec: ProviderSpec, secrets: tuple[str, ...] = ()) -> OpenAIProvider:
    try:
        import openai  # noqa: F401
    except ImportError:
        raise ProviderError("provider kind 'openai' needs the openai package (pip install openai)") from None
    return OpenAIProvider(spec, secrets)
