"""Out-of-memory back-off, by fault injection around the real all-MiniLM-L6-v2.

The wrappers raise a real torch.cuda.OutOfMemoryError (what CUDA raises) when a batch is
too large, or whenever one "poison" text is in the batch, and record the size of every
encode() call they receive, so the tests can check what the back-off actually did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from jammi.embedding.encode import MAX_OOM_RETRIES, BatchSizer, encode_window, is_oom
from jammi.spec.project import PipelineSpec, SourceSpec
from jammi.tables.build import build_embedding_table
from jammi.tables.catalog import STATUS_READY, Catalog

DIMS = 384
POISON = "this exact text always exhausts device memory"


def cuda_oom() -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity)"
    )


class RecordingEncoder:
    """Delegates to the real encoder; records every call's batch size."""

    def __init__(self, inner):
        self.inner = inner
        self.model_id = inner.model_id
        self.dimensions = inner.dimensions
        self.max_seq_length = inner.max_seq_length
        self.calls: list[int] = []

    def fail(self, texts: list[str]) -> BaseException | None:
        return None

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        err = self.fail(texts)
        if err is not None:
            raise err
        return self.inner.encode(texts)

    def token_counts(self, texts: list[str]) -> list[int]:
        return self.inner.token_counts(texts)


class OOMAbove(RecordingEncoder):
    """Raises CUDA OOM when a batch holds more than `threshold` texts."""

    def __init__(self, inner, threshold: int):
        super().__init__(inner)
        self.threshold = threshold

    def fail(self, texts):
        return cuda_oom() if len(texts) > self.threshold else None


class PoisonText(RecordingEncoder):
    """Raises CUDA OOM for any batch containing `poison`, even a batch of one."""

    def __init__(self, inner, poison: str = POISON):
        super().__init__(inner)
        self.poison = poison

    def fail(self, texts):
        return cuda_oom() if self.poison in texts else None


class Raises(RecordingEncoder):
    def __init__(self, inner, err: BaseException):
        super().__init__(inner)
        self.err = err

    def fail(self, texts):
        return self.err


def sample_texts(n: int) -> list[str]:
    """Short distinct texts (a few tokens each, so the real model is quick)."""
    return [f"item {i} " + "red " * (i % 4) for i in range(n)]


_reference: dict[str, np.ndarray] = {}


def reference(encoder, texts: list[str]) -> np.ndarray:
    """The unwrapped model's vectors for `texts` (computed once per text, in one call)."""
    missing = [t for t in dict.fromkeys(texts) if t not in _reference]
    if missing:
        _reference.update(zip(missing, encoder.encode(missing), strict=True))
    return np.vstack([_reference[t] for t in texts])


def test_real_cuda_oom_is_recognised():
    assert is_oom(cuda_oom())
    assert is_oom(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB"))
    assert is_oom(MemoryError())
    assert not is_oom(RuntimeError("size mismatch for weight"))
    assert not is_oom(ValueError("out of memory"))  # only RuntimeError-shaped messages count


@pytest.mark.slow
def test_batch_size_halves_32_16_8_and_sticks(encoder):
    texts = sample_texts(40)
    wrapped = OOMAbove(encoder, threshold=8)
    sizer = BatchSizer()
    assert sizer.size == 32

    window = encode_window(wrapped, texts, sizer)

    # 32 fails, 16 fails, 8 succeeds; every later call uses the reduced size
    assert wrapped.calls[:3] == [32, 16, 8]
    assert all(n <= 8 for n in wrapped.calls[2:])
    assert sum(wrapped.calls[2:]) == len(texts)  # each text encoded exactly once after back-off
    assert sizer.size == 8
    assert sizer.history == [16, 8]
    assert sizer.reductions == 2
    assert sizer.oom_events == 2
    assert window.errors == [None] * len(texts)
    assert window.vectors.shape == (len(texts), DIMS)
    assert window.vectors.dtype == np.float32
    np.testing.assert_allclose(window.vectors, reference(encoder, texts), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(window.vectors, axis=1), 1.0, atol=1e-5)
    assert (window.latency_ms > 0).all()


@pytest.mark.slow
def test_reduced_size_sticks_across_windows(encoder):
    """The sizer is shared by the windows of one run: the second window starts at 8."""
    sizer = BatchSizer(size=32)
    first = OOMAbove(encoder, threshold=8)
    encode_window(first, sample_texts(40), sizer)
    assert first.calls[:3] == [32, 16, 8]
    assert sizer.size == 8
    second = OOMAbove(encoder, threshold=8)
    window = encode_window(second, sample_texts(20), sizer)
    assert second.calls == [8, 8, 4]
    assert sizer.oom_events == 2  # no new OOM in the second window
    assert window.errors == [None] * 20


@pytest.mark.slow
def test_halving_follows_the_failed_batch_down_to_one(encoder):
    """Only single texts fit: a 10-row batch goes 10 -> 5 -> 2 -> 1 (three halvings)."""
    texts = sample_texts(10)
    wrapped = OOMAbove(encoder, threshold=1)
    sizer = BatchSizer(size=32)

    window = encode_window(wrapped, texts, sizer)

    assert MAX_OOM_RETRIES == 3
    assert wrapped.calls == [10, 5, 2] + [1] * len(texts)
    assert sizer.history == [5, 2, 1]
    assert window.errors == [None] * len(texts)
    np.testing.assert_allclose(window.vectors, reference(encoder, texts), atol=1e-5)
    assert sizer.size == 1


@pytest.mark.slow
def test_at_most_three_halvings_per_batch(encoder):
    texts = sample_texts(40)
    wrapped = OOMAbove(encoder, threshold=3)
    sizer = BatchSizer(size=32)

    window = encode_window(wrapped, texts, sizer)

    # 32, 16, 8, 4 all fail: three halvings, no fourth; the 4 rows then go singly
    assert wrapped.calls[:8] == [32, 16, 8, 4, 1, 1, 1, 1]
    assert sizer.history[:3] == [16, 8, 4]
    # the next batch starts at the sticky 4, fails once and settles at 2
    assert wrapped.calls[8:10] == [4, 2]
    assert all(n <= 2 for n in wrapped.calls[9:])
    assert sizer.size == 2
    assert window.errors == [None] * len(texts)
    np.testing.assert_allclose(window.vectors, reference(encoder, texts), atol=1e-5)


@pytest.mark.slow
def test_poison_row_gets_error_and_zero_vector(encoder):
    texts = sample_texts(20)
    poison_at = 7
    texts.insert(poison_at, POISON)
    wrapped = PoisonText(encoder)

    window = encode_window(wrapped, texts, BatchSizer(size=32))

    assert window.errors[poison_at] is not None
    assert "out of memory" in window.errors[poison_at]
    assert "OutOfMemoryError" in window.errors[poison_at]
    assert not window.vectors[poison_at].any()
    others = [i for i in range(len(texts)) if i != poison_at]
    assert all(window.errors[i] is None for i in others)
    np.testing.assert_allclose(
        window.vectors[others], reference(encoder, [texts[i] for i in others]), atol=1e-5
    )
    np.testing.assert_allclose(np.linalg.norm(window.vectors[others], axis=1), 1.0, atol=1e-5)
    # the poison text was tried alone and failed there too
    assert 1 in wrapped.calls


def test_poison_alone():
    class Tiny:
        model_id, dimensions, max_seq_length = "tiny", 3, 16

        def encode(self, texts):
            if POISON in texts:
                raise cuda_oom()
            return np.ones((len(texts), 3), dtype=np.float32)

    window = encode_window(Tiny(), [POISON], BatchSizer(size=32))
    assert window.errors == ["out of memory even at batch size 1: OutOfMemoryError"]
    assert window.vectors.tolist() == [[0.0, 0.0, 0.0]]


@pytest.mark.slow
@pytest.mark.parametrize(
    "err",
    [ValueError("bad input"), RuntimeError("expected scalar type Float but found Half"),
     KeyError("input_ids")],
    ids=["value-error", "runtime-error", "key-error"],
)


def test_non_oom_errors_propagate(encoder, err):
    wrapped = Raises(encoder, err)
    with pytest.raises(type(err)) as info:
        encode_window(wrapped, sample_texts(5), BatchSizer(size=32))
    assert info.value is err
    assert wrapped.calls == [5]  # no retry, no halving


@pytest.mark.slow
def test_non_oom_error_during_one_by_one_propagates(encoder):
    class OomThenBroken(RecordingEncoder):
        def fail(self, texts):
            if len(texts) > 3:
                return cuda_oom()
            return ValueError("tokenizer exploded") if len(texts) == 1 else None

    wrapped = OomThenBroken(encoder)
    with pytest.raises(ValueError, match="tokenizer exploded"):
        encode_window(wrapped, sample_texts(40), BatchSizer(size=32))
    assert wrapped.calls == [32, 16, 8, 4, 1]  # raised from the one-by-one pass


@pytest.mark.slow
def test_build_embedding_table_with_poison_row(encoder, tmp_path: Path):
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "title": ["Red running shoes", POISON, "Espresso machine", None, "Yoga mat", "Skillet"],
        }
    )
    frame_file = tmp_path / "validated_items.parquet"
    frame.to_parquet(frame_file, index=False)
    catalog = Catalog(tmp_path / "artifacts")
    src = SourceSpec(kind="csv", path="unused.csv", key="id", columns={"id": "int", "title": "str"})
    pipe = PipelineSpec(source="items", text_columns=["title"])
    wrapped = PoisonText(encoder)

    stats = build_embedding_table(
        catalog=catalog, frame_file=frame_file, pipeline="items_pipe", pipe=pipe,
        source="items", src=src, encoder=wrapped,
    )

    assert stats.rows_in == 6
    assert stats.rows_failed == 1
    assert stats.rows_skipped == 1
    assert stats.rows_embedded == 4
    assert stats.oom_events >= 1
    rec = catalog.table(stats.table_name)
    assert rec is not None
    assert rec.status == STATUS_READY
    assert rec.rows_failed == 1
    assert rec.rows_embedded == 4
    table = pq.read_table(stats.parquet_path)
    keys = table["_row_id"].to_pylist()
    assert sorted(keys) == ["1", "3", "5", "6"]
    assert "2" not in keys
    vecs = np.asarray(table["vector"].to_pylist(), dtype=np.float32)
    expected = {"1": "Red running shoes", "3": "Espresso machine", "5": "Yoga mat", "6": "Skillet"}
    np.testing.assert_allclose(vecs, reference(encoder, [expected[k] for k in keys]), atol=1e-5)
    assert not any(p.name.endswith(".tmp") for p in stats.parquet_path.parent.iterdir())
