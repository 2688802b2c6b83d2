"""Batch sizing without a GPU: halving on out-of-memory and growing back after a run of good
batches, the starting size from free GPU memory, the calibration that keeps the fastest size,
and the table-wide length-sorted encode that covers every text once. The encoders here are
fakes named as such: these tests are about the sizing logic, not about vectors."""

from __future__ import annotations

import time

import numpy as np
import pytest

from jammi.embedding.batching import BatchSizer, calibrate, gpu_start_size
from jammi.embedding.stream import CALIBRATE_MIN, CHUNK_TEXTS, Plan, encode_sorted


def test_halved_size_grows_back_after_a_run_of_good_batches():
    sizer = BatchSizer(size=64, grow_after=4)
    assert sizer.halve(64) == 32 and sizer.halve(32) == 16
    assert sizer.grow_after == 16  # each halving doubles the run needed before growing
    for _ in range(15):
        sizer.succeeded()
    assert sizer.size == 16
    sizer.succeeded()
    assert sizer.size == 32
    for _ in range(16):
        sizer.succeeded()
    assert sizer.size == 64
    for _ in range(64):
        sizer.succeeded()
    assert sizer.size == 64  # never past the size it started at
    assert sizer.history == [32, 16, 32, 64]


def test_without_grow_after_the_halved_size_sticks():
    sizer = BatchSizer(size=32)
    sizer.halve(32)
    for _ in range(100):
        sizer.succeeded()
    assert sizer.size == 16


def test_auto_size_means_the_usual_32_to_a_caller_that_does_not_calibrate():
    assert BatchSizer(size="auto").size == 32


@pytest.mark.parametrize(("free_gib", "window", "expected"), [
    (80, 256, 1024),  # capped
    (8, 256, 256),    # 4 GiB usable / (256 tokens x 64 KiB) = 256
    (1, 512, 16),     # 512 MiB / 32 MiB = 16
    (0.01, 512, 1),   # never below one
])
def test_gpu_start_size_from_free_memory(free_gib, window, expected):
    assert gpu_start_size(int(free_gib * 2**30), window) == expected


def test_calibration_keeps_the_fastest_size_and_its_vectors():
    cost = {16: 0.032, 32: 0.032, 64: 0.128}  # seconds per call: 32 is the cheapest per text

    def fake_encode(texts):
        time.sleep(cost[len(texts)])
        return np.full((len(texts), 3), float(len(texts)), dtype=np.float32)

    texts = [f"t{i}" for i in range(400)]
    found = calibrate(fake_encode, texts, (16, 32, 64), middle=100)
    assert found.size == 32
    assert found.positions == list(range(100, 100 + 2 * (16 + 32 + 64)))  # two rounds, taking turns
    assert found.vectors.shape == (224, 3)
    assert set(found.seconds_per_text) == {16, 32, 64}


def test_calibration_times_per_token_so_shorter_later_texts_do_not_decide():
    """Texts sorted longest first: the size tried last gets the shortest texts. Timed per text it
    would look cheapest; per token (what the model's work is), the size that is cheapest wins."""
    counts = [max(2, 400 - 6 * i) for i in range(600)]  # token counts, descending
    per_token = {16: 1.0e-5, 32: 0.8e-5, 64: 1.5e-5}  # seconds per token at each batch size

    def fake_encode(texts):
        tokens = sum(counts[int(t[1:])] for t in texts)
        time.sleep(tokens * per_token[len(texts)])
        return np.zeros((len(texts), 2), dtype=np.float32)

    texts = [f"t{i}" for i in range(600)]
    assert calibrate(fake_encode, texts, (16, 32, 64), middle=0, counts=counts, rounds=1).size == 32
    assert calibrate(fake_encode, texts, (16, 32, 64), middle=0, rounds=1).size == 64  # per text: wrong


class FakeEncoder:
    """Counts what it is asked to encode; a text's vector is its number (orchestration only)."""

    model_id = "fake"
    dimensions = 2
    max_seq_length = 8
    device = "cpu"

    def __init__(self):
        self.calls: list[int] = []

    def encode(self, texts):
        self.calls.append(len(texts))
        return np.array([[float(t.split()[0]), 1.0] for t in texts], dtype=np.float32)

    def token_counts(self, texts):
        return [len(t.split()) for t in texts]


def test_encode_sorted_covers_every_text_once_longest_first():
    n = CALIBRATE_MIN + CHUNK_TEXTS + 7
    texts = [f"{i} " + "w " * (i % 13) for i in range(n)]
    fake = FakeEncoder()
    plan = Plan()
    sizer = BatchSizer(size=32)
    seen = np.zeros(n, dtype=int)
    lengths = np.array(fake.token_counts(texts))
    for chunk in encode_sorted(fake, texts, sizer, plan, auto_size=True):
        seen[chunk.ids] += 1
        np.testing.assert_array_equal(chunk.vectors[:, 0], chunk.ids.astype(np.float32))
        assert (np.diff(lengths[chunk.ids]) <= 0).all()  # longest first, across the whole table
    assert (seen == 1).all()
    assert set(plan.calibrated) == {32, 64, 128} and sizer.size in plan.calibrated
    assert plan.truncated == sum(1 for t in texts if len(t.split()) > fake.max_seq_length)
    assert sum(fake.calls) == n  # each text encoded exactly once
