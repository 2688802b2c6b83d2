"""Tokenizing each text once. A table build counts every text's tokens to sort the table by
length, then encodes it in that order; `SentenceTransformer.encode` would tokenize each batch
again (a tenth of a long-text run on a CPU). Here the counting pass keeps the token ids, and the
encode pass pads them into the model's input and runs the model's own modules, which is what
`encode` does after its tokenizer. Only for the plain text model (Transformer, Pooling,
optionally Normalize) with a fast tokenizer padding on the right; any other model is encoded by
sentence-transformers as it is.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from jammi.embedding.window import window_texts

MAX_CACHED_TOKENS = 2_000_000  # ids kept between counting and encoding (int32 ids + type ids: 16 MB)
PLAIN_MODULES = {("Transformer", "Pooling"), ("Transformer", "Pooling", "Normalize")}
TEXTS_PER_THREAD = 256  # fewer texts per tokenizing thread cost more in threads than they save


def tokenizing_threads(texts: int) -> int:
    """Threads for tokenizing `texts` texts at once: one per CPU, each with at least
    TEXTS_PER_THREAD texts. Threads, not the tokenizers library's own pool: that pool is off
    wherever TOKENIZERS_PARALLELISM=false (Jammi's CLI, Makefile and deployments set it, for
    processes that fork), and `encode_batch` releases the GIL."""
    return max(1, min(os.cpu_count() or 1, texts // TEXTS_PER_THREAD))


def counting_copy(tokenizer):
    """A copy of a `tokenizers.Tokenizer` that neither truncates nor pads (the original keeps
    its settings), for counting tokens."""
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(tokenizer.to_str())
    counter.no_truncation()
    counter.no_padding()
    return counter


def usable(model) -> bool:
    """Whether `model` (a SentenceTransformer) is a plain text model this module can feed."""
    try:
        names = tuple(type(m).__name__ for m in model)
        backend = model.tokenizer.backend_tokenizer
    except (AttributeError, TypeError):
        return False
    padding = backend.padding or {}
    truncation = backend.truncation or {}
    return (names in PLAIN_MODULES and getattr(model.tokenizer, "is_fast", False)
            and hasattr(model, "preprocess") and padding.get("direction", "right") == "right"
            and truncation.get("direction", "right") == "right")


class PreTokenizer:
    """Counts tokens of texts and keeps their ids (up to MAX_CACHED_TOKENS) for `features`."""

    def __init__(self, model, max_seq_length: int, windowed: bool):
        import torch
        backend = model.tokenizer.backend_tokenizer
        self._tok = counting_copy(backend)
        self._tok.enable_truncation(max_length=max_seq_length)
        padding = backend.padding or {}
        self._pad_id = int(padding.get("pad_id", 0))
        self._pad_type_id = int(padding.get("pad_type_id", 0))
        self._names = list(model.tokenizer.model_input_names)
        probe = model.preprocess(["probe"])  # the non-tensor entries sentence-transformers adds
        self._extra = {k: v for k, v in probe.items() if not torch.is_tensor(v)}
        self._max = max_seq_length
        self._windowed = windowed
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._cached_tokens = 0
        self._lock = threading.Lock()

    def _encode(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        """Ids, type ids and whether the window cut it, per text; a whole table's texts (the
        length sort's count) in contiguous parts on several threads, the same result."""
        windows = window_texts(texts, self._max, self._windowed)
        threads = tokenizing_threads(len(windows))
        if threads == 1:
            return _arrays(self._tok.encode_batch_fast(windows))
        step = -(-len(windows) // threads)
        parts = [windows[i:i + step] for i in range(0, len(windows), step)]
        with ThreadPoolExecutor(max_workers=len(parts), thread_name_prefix="jammi-tokenize") as pool:
            encoded = list(pool.map(self._tok.encode_batch_fast, parts))
        return [item for part in encoded for item in _arrays(part)]

    def counts(self, texts: list[str]) -> list[int]:
        """Tokens per text with the special ones; a text cut at the window counts window + 1.
        The ids kept are these texts' only: a count starts a run (count all, then encode all), so
        ids a run counted and never encoded do not outlive the next count."""
        encoded = self._encode(texts)
        with self._lock:
            self._cache.clear()
            self._cached_tokens = 0
            for text, (ids, types, _cut) in zip(texts, encoded, strict=True):
                if self._cached_tokens + len(ids) <= MAX_CACHED_TOKENS and text not in self._cache:
                    self._cache[text] = (ids, types)
                    self._cached_tokens += len(ids)
        return [len(ids) + (1 if cut else 0) for ids, _types, cut in encoded]

    def features(self, texts: list[str]) -> dict:
        """The model's input for `texts`, padded to the longest, from the kept ids where there are
        some (each used once) and tokenized now otherwise."""
        import torch

        found: list[tuple[np.ndarray, np.ndarray] | None] = []
        with self._lock:
            for text in texts:
                kept = self._cache.pop(text, None)
                if kept is not None:
                    self._cached_tokens -= len(kept[0])
                found.append(kept)
        missing = [i for i, kept in enumerate(found) if kept is None]
        if missing:
            for i, (ids, types, _cut) in zip(missing, self._encode([texts[i] for i in missing]), strict=True):
                found[i] = (ids, types)
        width = max(len(ids) for ids, _ in found)
        input_ids = np.full((len(texts), width), self._pad_id, dtype=np.int64)
        type_ids = np.full((len(texts), width), self._pad_type_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, (ids, types) in enumerate(found):
            input_ids[row, :len(ids)] = ids
            type_ids[row, :len(ids)] = types
            mask[row, :len(ids)] = 1
        arrays = {"input_ids": input_ids, "token_type_ids": type_ids, "attention_mask": mask}
        features = {name: torch.from_numpy(arrays[name]) for name in self._names if name in arrays}
        return {**features, **self._extra}


def _arrays(encodings) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    return [(np.asarray(e.ids, dtype=np.int32), np.asarray(e.type_ids, dtype=np.int32),
             bool(e.overflowing)) for e in encodings]
