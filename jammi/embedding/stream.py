"""Encoding a whole table's distinct texts in the order that wastes least: every text once, sorted
by token length across the table (batches of like length carry little padding), in chunks so
only one chunk's vectors are held at a time, at a batch size the run measured for itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from jammi.embedding.batching import BatchSizer, calibrate, candidates, start_size
from jammi.embedding.encode import encode_window
from jammi.embedding.model import Encoder

CHUNK_TEXTS = 2048  # texts per chunk: the vectors held at once, and the unit handed to the writer
CALIBRATE_MIN = 2000  # fewer distinct texts than this: calibration would cost more than it saves


@dataclass
class Chunk:
    ids: np.ndarray  # positions in the texts given
    vectors: np.ndarray  # (len(ids), d) float32; a row with an error is zero
    errors: list[str | None]


@dataclass
class Plan:
    """What a run of `encode_sorted` did: its sizes and how many texts were truncated."""

    truncated: int = 0
    calibrated: dict[int, float] | None = None  # seconds per text of each size tried


def length_order(encoder: Encoder, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `texts`, longest (in tokens) first, and the token counts."""
    if not texts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    counts = np.asarray(encoder.token_counts(texts), dtype=np.int64)
    return np.argsort(-counts, kind="stable"), counts


def encode_sorted(encoder: Encoder, texts: list[str], sizer: BatchSizer, plan: Plan,
                  auto_size: bool = True, device: str = "cpu") -> Iterator[Chunk]:
    """Chunks of vectors of the distinct, non-empty `texts`, longest first. With `auto_size`, a
    GPU starts from the size its free memory allows, and with enough texts a short calibration
    on texts of median length picks the batch size (its vectors are yielded first, not thrown
    away)."""
    auto_size = auto_size and not hasattr(encoder, "encode_many")  # a provider's requests are its own
    order, counts = length_order(encoder, texts)
    plan.truncated = int((counts > encoder.max_seq_length).sum())
    done = np.zeros(len(texts), dtype=bool)
    gpu = start_size(device, encoder.max_seq_length) if auto_size else None
    if gpu:
        sizer.size = sizer.ceiling = gpu
    if auto_size and len(texts) >= CALIBRATE_MIN:
        ordered = [texts[i] for i in order]
        found = calibrate(encoder.encode, ordered, candidates(device, encoder.max_seq_length),
                          middle=len(ordered) // 2, counts=counts[order].tolist())
        del ordered
        plan.calibrated = found.seconds_per_text
        sizer.size = sizer.ceiling = found.size
        if found.positions:
            ids = order[np.asarray(found.positions)]
            done[ids] = True
            yield Chunk(ids, found.vectors, [None] * len(ids))
    for start in range(0, len(order), CHUNK_TEXTS):
        ids = order[start:start + CHUNK_TEXTS]
        ids = ids[~done[ids]]
        if len(ids):
            window = encode_window(encoder, [texts[i] for i in ids], sizer, presorted=True)
            yield Chunk(ids, window.vectors, window.errors)
