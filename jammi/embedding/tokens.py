"""A model's own tokenizer without its weights: token counts and per-token character offsets,
which is all chunking needs (loading the tokenizer takes a fraction of a second; the model,
seconds)."""

from __future__ import annotations

import functools
import threading

from jammi.embedding.model_files import resolve_model_path
from jammi.errors import ModelLoadError

_lock = threading.Lock()


class ModelTokenizer:
    """The tokenizer of `model_id`, loaded offline; counts leave out special tokens."""

    def __init__(self, model_id: str):
        self.model_id = model_id
        try:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(resolve_model_path(model_id), local_files_only=True)
        except Exception as err:  # any loader failure: say which model
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelLoadError(f"model {model_id!r}: its tokenizer could not be loaded offline "
                                 f"({type(err).__name__}: {first})") from None
        if not getattr(self._tok, "is_fast", False):
            raise ModelLoadError(f"model {model_id!r}: chunking needs a fast tokenizer (tokenizer.json) "
                                 "for character offsets")
        self._tok.model_max_length = 10**9  # counting only: no "longer than the model" warning
        self.special_tokens = int(self._tok.num_special_tokens_to_add())  # added to every text encoded

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False))

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """(start, end) in `text` of every token, in order."""
        enc = self._tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(int(s), int(e)) for s, e in enc["offset_mapping"]]


@functools.cache
def _load(model_id: str) -> ModelTokenizer:
    return ModelTokenizer(model_id)


def load_tokenizer(model_id: str) -> ModelTokenizer:
    """Load once per process and model."""
    with _lock:
        return _load(model_id)
