"""Chunk a document by sentences, fixed token windows or recursive semantic splitting
(semchunk), with exact offsets and stable ids.

Every chunk is a character slice ``text[start:end]`` of the original document, at most
``max_tokens`` long as counted by the caller's ``count_tokens`` (the pipeline model's own
tokenizer; ``tokens`` windows are cut on that tokenizer's character offsets). Chunk ids are
``doc_id#ordinal:hash``, so re-chunking unchanged text gives the same ids and
:func:`changed_chunks` tells a refresh exactly what to embed and what to delete.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import semchunk

from jammi.errors import ConfigError

Strategy = Literal["sentence", "tokens", "recursive"]
STRATEGIES: tuple[str, ...] = ("sentence", "tokens", "recursive")

# A sentence ends at whitespace after a terminator, or at a line break (the same boundaries
# semchunk prefers when it has to split inside a paragraph).
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\s*[\r\n]\s*")


@dataclass(frozen=True)
class Chunk:
    """One chunk: ``text == document[start:end]``; ``chunk_id`` is deterministic."""

    doc_id: str
    chunk_id: str
    ordinal: int
    start: int
    end: int
    text: str


def chunk_id(doc_id: str, ordinal: int, text: str) -> str:
    """``doc_id#ordinal:hash``, the hash being the first 16 hex digits of blake2b(text)."""
    digest = hashlib.blake2b(text.encode("utf-8")).hexdigest()[:16]
    return f"{doc_id}#{ordinal}:{digest}"


def _check(strategy: str, max_tokens: int, overlap: int) -> None:
    if strategy not in STRATEGIES:
        raise ConfigError(f"chunking.strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"chunking.max_tokens must be an integer >= 1, got {max_tokens!r}")
    if not isinstance(overlap, int) or overlap < 0 or overlap >= max_tokens:
        raise ConfigError(
            f"chunking.overlap must be an integer >= 0 and < max_tokens ({max_tokens}), got {overlap!r}"
        )


def _semchunk_spans(text: str, max_tokens: int, overlap: int, count) -> list[tuple[int, int]]:
    _, offsets = semchunk.chunk(text, max_tokens, count, memoize=False, offsets=True, overlap=overlap or None)
    return [(s, e) for s, e in offsets if text[s:e].strip()]


def _token_window_spans(text: str, max_tokens: int, overlap: int, count,
                        offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    # Windows of max_tokens tokens, each starting `overlap` tokens before the previous one
    # ended. A window whose text re-tokenizes longer (it starts inside a word) loses its
    # last tokens until it fits.
    spans: list[tuple[int, int]] = []
    i, n = 0, len(offsets)
    while i < n:
        j = min(i + max_tokens, n)
        while j > i + 1 and count(text[offsets[i][0] : offsets[j - 1][1]]) > max_tokens:
            j -= 1
        spans.append((offsets[i][0], offsets[j - 1][1]))
        if j >= n:
            break
        i = max(i + 1, j - overlap)
    return spans


def _sentences(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for m in _SENTENCE_BREAK.finditer(text):
        if text[pos : m.start()].strip():
            spans.append((pos, m.start()))
        pos = m.end()
    if text[pos:].strip():
        spans.append((pos, len(text)))
    return spans


def _sentence_spans(text: str, max_tokens: int, overlap: int, count) -> list[tuple[int, int]]:
    # Sentences longer than max_tokens are split by semchunk; the rest are packed whole.
    units: list[tuple[int, int]] = []
    for s, e in _sentences(text):
        if count(text[s:e]) <= max_tokens:
            units.append((s, e))
        else:
            units.extend((s + a, s + b) for a, b in _semchunk_spans(text[s:e], max_tokens, 0, count))
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        j = i + 1
        while j < len(units) and count(text[units[i][0] : units[j][1]]) <= max_tokens:
            j += 1
        spans.append((units[i][0], units[j - 1][1]))
        if j >= len(units):
            break
        # Next chunk starts with the trailing whole sentences of this one that fit in `overlap`.
        k = j
        while k - 1 > i and overlap and count(text[units[k - 1][0] : units[j - 1][1]]) <= overlap:
            k -= 1
        # Keep the overlapped start only if the next chunk can still add a new sentence.
        if k < j and count(text[units[k][0] : units[j][1]]) > max_tokens:
            k = j
        i = k
    return spans


def chunk_document(
    doc_id: str,
    text: str,
    *,
    strategy: Strategy,
    max_tokens: int = 256,
    overlap: int = 32,
    count_tokens: Callable[[str], int],
    token_offsets: Callable[[str], list[tuple[int, int]]] | None = None,
) -> list[Chunk]:
    """Split ``text`` into ordered chunks of at most ``max_tokens`` tokens.

    ``sentence`` packs whole sentences (a sentence longer than ``max_tokens`` is split by
    semchunk) and overlaps neighbours by whole trailing sentences of up to ``overlap`` tokens;
    ``tokens`` cuts fixed windows of ``max_tokens`` tokens, ``overlap`` tokens shared, on the
    character offsets ``token_offsets`` gives (the tokenizer's ``(start, end)`` per token),
    wherever they fall; ``recursive`` uses semchunk's recursive splitting at the most
    meaningful boundary (paragraph, line, sentence, clause, word) with ``overlap`` tokens shared.
    """
    _check(strategy, max_tokens, overlap)
    if strategy == "tokens" and token_offsets is None:
        raise ConfigError("chunking.strategy 'tokens' needs the tokenizer's token_offsets")
    if not text or not text.strip():
        return []
    count = functools.lru_cache(maxsize=None)(count_tokens)
    if strategy == "sentence":
        spans = _sentence_spans(text, max_tokens, overlap, count)
    elif strategy == "tokens":
        spans = _token_window_spans(text, max_tokens, overlap, count, token_offsets(text))
    else:
        spans = _semchunk_spans(text, max_tokens, overlap, count)
    return [
        Chunk(doc_id, chunk_id(doc_id, n, text[s:e]), n, s, e, text[s:e]) for n, (s, e) in enumerate(spans)
    ]


def changed_chunks(old: list[Chunk], new: list[Chunk]) -> tuple[list[Chunk], list[str]]:
    """New chunks whose id is not in ``old`` (to embed), and old ids not in ``new`` (to delete)."""
    old_ids = {c.chunk_id for c in old}
    new_ids = {c.chunk_id for c in new}
    to_embed = [c for c in new if c.chunk_id not in old_ids]
    return to_embed, [c.chunk_id for c in old if c.chunk_id not in new_ids]
