"""Embedding providers: services that embed a pipeline's texts over HTTP (a pipeline's
`provider:` block, jammi.spec.provider), behind the same Encoder protocol as the in-process
models, so builds, refreshes, partitions, streams, checks and searches use them unchanged.

Each kind names the module that implements it, imported only when a pipeline uses it:
`openai` is jammi.embedding.providers.openai_api. A provider encoder has, beyond the Encoder
protocol, `encode_many` (per-row errors instead of an exception; jammi.embedding.encode hands it
whole windows, which it packs, paces and sends concurrently itself) and `usage` (what its
requests cost, jammi.embedding.providers.usage).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from jammi.spec.project import PipelineSpec
from jammi.spec.provider import ProviderSpec

PROVIDERS = {"openai": "jammi.embedding.providers.openai_api:load_provider"}
QUERY_CACHE_TEXTS = 4096  # query vectors kept per provider, the least recently used dropped first
_queries: dict[str, CachedQueries] = {}
_lock = threading.Lock()


def load_provider(spec: ProviderSpec, secrets: tuple[str, ...] = ()):
    """A new provider encoder for `spec` (its usage counts from zero); `secrets` are masked in
    its errors besides its API key."""
    module, name = PROVIDERS[spec.kind].split(":")
    return getattr(importlib.import_module(module), name)(spec, tuple(secrets))


def is_provider(encoder) -> bool:
    return hasattr(encoder, "encode_many")


def pipeline_encoder(pipe: PipelineSpec, device: str = "auto", artifact_dir: Path | str | None = None,
                     secrets: tuple[str, ...] = ()):
    """The encoder of a pipeline's tables: its provider (a fresh one per run, so its usage is the
    run's), or its in-process model, loaded only when a text is first encoded."""
    if pipe.provider is not None:
        return load_provider(pipe.provider, secrets)
    from jammi.embedding.model import LazyEncoder

    return LazyEncoder(pipe.model, device, pipe.backend, artifact_dir)


class CachedQueries:
    """A provider for query texts that keeps the vector of each text it has sent (up to
    QUERY_CACHE_TEXTS texts): a repeated query costs no request."""

    def __init__(self, provider):
        self.provider = provider
        self.model_id = provider.model_id
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    @property
    def dimensions(self) -> int:
        return self.provider.dimensions

    @property
    def max_seq_length(self) -> int:
        return self.provider.max_seq_length

    def token_counts(self, texts: list[str]) -> list[int]:
        return self.provider.token_counts(texts)

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
            self.hits += len(texts) - len(missing)
        if missing:
            fresh = self.provider.encode(missing)
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    self._vectors[text] = vector
                    self._vectors.move_to_end(text)
                while len(self._vectors) > QUERY_CACHE_TEXTS:
                    self._vectors.popitem(last=False)
        with self._lock:
            out = []
            for text in texts:
                vector = self._vectors.get(text)
                if vector is None:  # dropped by a concurrent query: send it again
                    vector = self.provider.encode([text])[0]
                else:
                    self._vectors.move_to_end(text)
                out.append(vector)
        return np.stack(out) if out else np.zeros((0, self.dimensions), dtype=np.float32)


def query_provider(spec: ProviderSpec, secrets: tuple[str, ...] = ()) -> CachedQueries:
    """The provider that encodes search queries for `spec`, one per process and provider (its
    query cache is shared by every search of the process)."""
    key = spec.model_dump_json(exclude={"api_key"}) + hashlib.sha256(
        (spec.api_key.get_secret_value() if spec.api_key else "").encode("utf-8")).hexdigest()
    with _lock:
        found = _queries.get(key)
        if found is None:
            found = _queries[key] = CachedQueries(load_provider(spec, secrets))
        return found


def identity_of(spec: ProviderSpec) -> str:
    """A stable text of what the provider's vectors depend on (compared with a table's manifest)."""
    return json.dumps(spec.identity, sort_keys=True)
