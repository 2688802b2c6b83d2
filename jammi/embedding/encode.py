"""Encoding a window of texts in length-sorted batches, with out-of-memory back-off.

On an OOM error the batch size halves and the batch is retried, up to three times;
the reduced size sticks for the rest of the run. Rows of a batch that still fails
are tried one by one, and a row that fails alone is marked as an error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from jammi.embedding.model import Encoder
from jammi.errors import EmbeddingError

EMPTY_TEXT_ERROR = "Empty or null text input"
DEFAULT_BATCH = 32
MAX_OOM_RETRIES = 3


def is_oom(err: BaseException) -> bool:
    if isinstance(err, MemoryError):
        return True
    try:
        import torch

        if isinstance(err, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    msg = str(err).lower()
    return isinstance(err, RuntimeError) and (
        "out of memory" in msg or "can't allocate memory" in msg
    )


def _release_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class BatchSizer:
    """The batch size in force; shrinks on OOM and never grows back within a run."""

    size: int = 32
    reductions: int = 0
    oom_events: int = 0
    history: list[int] = field(default_factory=list)

    def halve(self, current: int) -> int:
        self.oom_events += 1
        new = max(1, current // 2)
        if new < self.size:
            self.size = new
            self.reductions += 1
            self.history.append(new)
        return self.size


@dataclass
class EncodedWindow:
    vectors: np.ndarray  # (n, d) float32; rows with an error are zero
    errors: list[str | None]
    latency_ms: np.ndarray  # wall time of the batch call each row was in


def encode_window(encoder: Encoder, texts: list[str], sizer: BatchSizer) -> EncodedWindow:
    """Encode non-empty `texts`; the output keeps their order."""
    n = len(texts)
    vectors = np.zeros((n, encoder.dimensions), dtype=np.float32)
    errors: list[str | None] = [None] * n
    latency = np.zeros(n, dtype=np.float64)
    order = sorted(range(n), key=lambda i: len(texts[i]), reverse=True)  # less padding
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
