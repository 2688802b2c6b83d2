"""Tokens of a provider's texts: counted with the model's own tokenizer where Jammi has it
(a local model directory, or the packaged default model a local server serves), else estimated
conservatively from the text's UTF-8 length. Texts longer than the model's input window are cut
to it before they are sent, as the in-process model truncates its input.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

from jammi.embedding.window import splits_on_whitespace, window_texts
from jammi.errors import ConfigError, ModelLoadError
from jammi.spec.provider import ProviderSpec

# input windows of OpenAI's embedding models (tokens)
KNOWN_WINDOWS = {"text-embedding-3-small": 8191, "text-embedding-3-large": 8191,
                 "text-embedding-ada-002": 8191}
DEFAULT_WINDOW = 8191
# an estimate counts one token per this many UTF-8 bytes: English averages about four bytes per
# token in the common BPE vocabularies, so the estimate errs high, and a packed request stays
# within its token budget
BYTES_PER_TOKEN = 2.5
ESTIMATE_SPECIAL = 2


@dataclass
class Fitted:
    """Texts as they are sent (cut to the window), their token counts, and which were cut."""

    texts: list[str]
    counts: list[int]
    cut: list[bool]


@functools.cache
def _tokenizer(directory: str):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(directory) / "tokenizer.json"))
    tok.no_truncation()  # a tokenizer.json may carry the exporter's truncation and padding
    tok.no_padding()
    return tok


def _window_of(directory: Path) -> int | None:
    for name, key in (("sentence_bert_config.json", "max_seq_length"),
                      ("tokenizer_config.json", "model_max_length")):
        try:
            value = json.loads((directory / name).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError):
            continue
        if isinstance(value, int) and 0 < value < 1_000_000:
            return value
    return None


class TokenCounter:
    """Counts tokens for `spec` and fits texts to its window (see the module docstring)."""

    def __init__(self, spec: ProviderSpec):
        from jammi.embedding.model_files import resolve_model_path

        name = spec.tokenizer or spec.model
        self._tok = None
        window = None
        try:
            path = Path(resolve_model_path(name))
        except ModelLoadError as err:
            if spec.tokenizer:
                raise ConfigError(f"provider.tokenizer: {err}") from None
            path = None
        if path is not None and (path / "tokenizer.json").is_file():
            self._tok = _tokenizer(str(path))
            window = _window_of(path)
        elif spec.tokenizer:
            raise ConfigError(f"provider.tokenizer: {spec.tokenizer!r} is not a local model directory with "
                              "tokenizer.json (nor the packaged default model)")
        self.window = spec.max_input_tokens or window or KNOWN_WINDOWS.get(spec.model, DEFAULT_WINDOW)
        if self._tok is not None:
            self._windowed = splits_on_whitespace(self._tok)
            probe = self._tok.encode("a")
            self._special = sum(probe.special_tokens_mask)

    @property
    def exact(self) -> bool:
        """Whether counts come from the model's tokenizer (else they are estimates)."""
        return self._tok is not None

    def counts(self, texts: list[str]) -> list[int]:
        """Tokens per text with the special ones; a text longer than the window counts more than
        the window but not necessarily all of its tokens (only its start is tokenized)."""
        if self._tok is None:
            return [_estimate(t) for t in texts]
        return [len(e.ids) for e in self._tok.encode_batch(window_texts(texts, self.window, self._windowed))]

    def fit(self, texts: list[str]) -> Fitted:
        """`texts` cut to the window where longer, with the tokens each is sent with."""
        if self._tok is None:
            return self._fit_estimated(texts)
        out, counts, cut = list(texts), [], []
        shown = window_texts(texts, self.window, self._windowed)
        for i, enc in enumerate(self._tok.encode_batch(shown)):
            n = len(enc.ids)
            if n > self.window:  # cut after the last word piece that fits, beside the special tokens
                kept = [o for o, s in zip(enc.offsets, enc.special_tokens_mask, strict=True) if not s]
                out[i] = shown[i][:kept[self.window - self._special - 1][1]]
                n = self.window
            counts.append(n)
            cut.append(n < len(enc.ids))
        return Fitted(out, counts, cut)

    def _fit_estimated(self, texts: list[str]) -> Fitted:
        out, counts, cut = list(texts), [], []
        limit = int((self.window - ESTIMATE_SPECIAL) * BYTES_PER_TOKEN)
        for i, text in enumerate(texts):
            n = _estimate(text)
            if n > self.window:
                out[i] = text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")
            counts.append(min(n, _estimate(out[i])))
            cut.append(n > self.window)
        return Fitted(out, counts, cut)


def _estimate(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN) + ESTIMATE_SPECIAL
