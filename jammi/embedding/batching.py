"""How many texts go to the model per call: the size in force (halved on out-of-memory, grown back
after a run of good batches), the starting size on a GPU from its free memory, and a short
calibration that times a few sizes on the run's own texts and keeps the fastest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

DEFAULT_SIZE = 32
CPU_CANDIDATES = (32, 64, 128)
CALIBRATION_ROUNDS = 2  # each size timed this many times, taking turns; its best counts
GROW_AFTER = 16  # good batches in a row before a halved size doubles again
MAX_GPU_BATCH = 1024
BYTES_PER_TOKEN = 64 * 1024  # activations per token of a small transformer, with headroom


@dataclass
class BatchSizer:
    """The batch size in force. An out-of-memory error halves it; with `grow_after` set, that
    many good batches in a row double it again, up to the size it started at, and each
    halving doubles the run needed next time (a size that keeps failing is tried less often)."""

    size: int = 32  # or "auto" (a caller that does not calibrate): the usual 32
    reductions: int = 0
    oom_events: int = 0
    history: list[int] = field(default_factory=list)
    grow_after: int | None = None
    ceiling: int = 0
    streak: int = 0

    def __post_init__(self) -> None:
        if self.size == "auto":
            self.size = DEFAULT_SIZE
        self.ceiling = max(self.ceiling, self.size)

    def halve(self, current: int) -> int:
        self.oom_events += 1
        self.streak = 0
        if self.grow_after:
            self.grow_after *= 2
        new = max(1, current // 2)
        if new < self.size:
            self.size = new
            self.reductions += 1
            self.history.append(new)
        return self.size

    def succeeded(self) -> None:
        """One batch encoded at the size in force."""
        self.streak += 1
        if self.grow_after and self.streak >= self.grow_after and self.size < self.ceiling:
            self.size = min(self.ceiling, self.size * 2)
            self.history.append(self.size)
            self.streak = 0


def gpu_start_size(free_bytes: int, max_seq_length: int) -> int:
    """The largest power of two of full-window texts whose activations fit in half the free memory."""
    fits = (free_bytes // 2) // max(1, max_seq_length * BYTES_PER_TOKEN)
    size = 1
    while size * 2 <= min(fits, MAX_GPU_BATCH):
        size *= 2
    return size


def start_size(device: str, max_seq_length: int) -> int | None:
    """The starting batch size on a CUDA device from its free memory; None on the CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return gpu_start_size(free, max_seq_length)


def candidates(device: str, max_seq_length: int) -> tuple[int, ...]:
    """Sizes a calibration tries: a few around the CPU's usual best, or the GPU's start and halves."""
    start = start_size(device, max_seq_length)
    if start is None:
        return CPU_CANDIDATES
    return tuple(sorted({max(1, start // 4), max(1, start // 2), start}))


@dataclass
class Calibration:
    size: int
    seconds_per_text: dict[int, float]  # each size's best time per text (per token, with counts)
    positions: list[int]  # positions (in the texts given) encoded during calibration
    vectors: np.ndarray  # their vectors, in the order of `positions`


def calibrate(encode: Callable[[list[str]], np.ndarray], texts: list[str], sizes: tuple[int, ...],
              middle: int, counts: list[int] | None = None, rounds: int = CALIBRATION_ROUNDS
              ) -> Calibration:
    """Time batches of each size on consecutive texts from `middle` on (texts sorted by length)
    and pick the size with the least time per token (`counts`, the texts' token counts; per text
    without them). Sizes take turns for `rounds` rounds and each keeps its best time, so one
    interruption of a shared machine does not decide; timing per token keeps the later, shorter
    texts of a descending order from favouring whichever size runs last. The vectors are kept:
    calibration encodes real rows, it wastes none."""
    best: dict[int, float] = {}
    positions: list[int] = []
    vectors: list[np.ndarray] = []
    pos = middle
    for _ in range(rounds):
        for size in sizes:
            batch = list(range(pos, min(pos + size, len(texts))))
            if len(batch) < size:
                break
            t0 = time.perf_counter()
            vectors.append(encode([texts[i] for i in batch]))
            seconds = time.perf_counter() - t0
            work = sum(counts[i] for i in batch) if counts is not None else size
            best[size] = min(best.get(size, float("inf")), seconds / max(1, work))
            positions += batch
            pos += size
    chosen = min(best, key=best.get) if best else sizes[0]
    dims = vectors[0].shape[1] if vectors else 0
    return Calibration(chosen, best, positions,
                       np.vstack(vectors) if vectors else np.zeros((0, dims), dtype=np.float32))
