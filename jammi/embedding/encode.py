"""Encoding a window of texts in length-sorted batches, with out-of-memory back-off.

On an OOM error the batch size halves and the batch is retried, up to three times;
the reduced size sticks for the rest of the run unless the sizer grows it back after a run of
good batches (jammi.embedding.batching). Rows of a batch that still fails are tried one by one,
and a row that fails alone is marked as an error.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from jammi.embedding.batching import BatchSizer
from jammi.embedding.model import Encoder
from jammi.errors import EmbeddingError

EMPTY_TEXT_ERROR = "Empty or null text input"
DEFAULT_BATCH = 32
MAX_OOM_RETRIES = 3


def is_oom(err: BaseException) -> bool:
    if isinstance(err, MemoryError):
        return True
    torch = sys.modules.get("torch")  # an error from a run without torch is no torch error
    if torch is not None and isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    msg = str(err).lower()
    return isinstance(err, RuntimeError) and (
        "out of memory" in msg or "can't allocate memory" in msg or "failed to allocate memory" in msg
    )


def _release_accelerator_memory() -> None:
    torch = sys.modules.get("torch")  # an encoder that never imported torch holds no GPU memory
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class EncodedWindow:
    vectors: np.ndarray  # (n, d) float32; rows with an error are zero
    errors: list[str | None]
    latency_ms: np.ndarray  # wall time of the batch call each row was in


def encode_window(encoder: Encoder, texts: list[str], sizer: BatchSizer,
                  presorted: bool = False) -> EncodedWindow:
    """Encode non-empty `texts`; the output keeps their order. Batches take texts of like length
    (less padding): sorted here by length, or as given when the caller sorted them (`presorted`)."""
    many = getattr(encoder, "encode_many", None)
    if many is not None:  # a provider packs, paces and retries its own requests (jammi.embedding.providers)
        return EncodedWindow(*many(texts))
    n = len(texts)
    vectors = np.zeros((n, encoder.dimensions), dtype=np.float32)
    errors: list[str | None] = [None] * n
    latency = np.zeros(n, dtype=np.float64)
    order = list(range(n)) if presorted else sorted(range(n), key=lambda i: len(texts[i]), reverse=True)
    pos = 0
    while pos < n:
        batch = order[pos : pos + sizer.size]
        encoded = False
        for attempt in range(MAX_OOM_RETRIES + 1):
            try:
                t0 = time.perf_counter()
                vectors[batch] = encoder.encode([texts[i] for i in batch])
                latency[batch] = (time.perf_counter() - t0) * 1000.0
                encoded = True
                if len(batch) == sizer.size:
                    sizer.succeeded()
                break
            except Exception as err:
                if not is_oom(err):
                    raise
                _release_accelerator_memory()
                if attempt == MAX_OOM_RETRIES or len(batch) == 1:
                    break
                batch = batch[: sizer.halve(len(batch))]
        if not encoded:
            _one_by_one(encoder, texts, batch, vectors, errors, latency, sizer)
        pos += len(batch)
    return EncodedWindow(vectors, errors, latency)


def _one_by_one(encoder, texts, batch, vectors, errors, latency, sizer) -> None:
    for i in batch:
        t0 = time.perf_counter()
        try:
            vectors[i] = encoder.encode([texts[i]])[0]
        except Exception as err:
            if not is_oom(err):
                raise
            sizer.oom_events += 1
            _release_accelerator_memory()
            errors[i] = f"out of memory even at batch size 1: {type(err).__name__}"
        latency[i] = (time.perf_counter() - t0) * 1000.0


def encode_all(encoder: Encoder, texts: list[str], batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Vectors of non-empty `texts`, in order, with the same out-of-memory back-off as a table
    build; a text that fails even alone raises EmbeddingError naming it."""
    window = encode_window(encoder, texts, BatchSizer(size=batch_size))
    failed = [i for i, error in enumerate(window.errors) if error]
    if failed:
        first = texts[failed[0]]
        raise EmbeddingError(f"model {encoder.model_id!r}: {len(failed)} text(s) could not be encoded "
                             f"({window.errors[failed[0]]}); first: {first[:80]!r}")
    return window.vectors
