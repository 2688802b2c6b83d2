"""Chunking engine: exact offsets, token bounds, sentence integrity, stable ids and diffs."""

from __future__ import annotations

import os
import random
from itertools import pairwise

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from jammi.chunking import Chunk, changed_chunks, chunk_document  # noqa: E402
from jammi.errors import ConfigError  # noqa: E402

STRATEGIES = ("sentence", "tokens", "recursive")
WORDS = (
    "data pipeline vector index embedding model river harbour café naïve storm market "
    "engine quarterly report growth policy council budget school teacher garden season "
    "rain drought harvest bridge traffic station signal network latency throughput"
).split()


@pytest.fixture(scope="module")
def tok():
    from jammi.embedding.tokens import load_tokenizer

    return load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def count(tok):
    return tok.count


@pytest.fixture(scope="module")
def offsets(tok):
    return tok.offsets


def make_doc(seed: int = 7, paragraphs: int = 18) -> tuple[str, list[tuple[int, int]]]:
    """A multi-paragraph document and the (start, end) span of every sentence in it."""
    rng = random.Random(seed)
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for p in range(paragraphs):
        if p:
            parts.append("\n\n")
            pos += 2
        for s in range(rng.randint(4, 7)):
            if s:
                parts.append(" ")
                pos += 1
            words = [rng.choice(WORDS) for _ in range(rng.randint(8, 20))]
            sentence = " ".join(words).capitalize() + rng.choice(".!?")
            spans.append((pos, pos + len(sentence)))
            parts.append(sentence)
            pos += len(sentence)
    return "".join(parts), spans


@pytest.fixture(scope="module")
def doc():
    return make_doc()


def test_document_is_long_enough(doc, count):
    assert 1200 <= count(doc[0]) <= 2500


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_offsets_exact_ordered_bounded_and_covering(doc, count, offsets, strategy):
    text, _ = doc
    chunks = chunk_document("d1", text, strategy=strategy, max_tokens=128, overlap=16, count_tokens=count,
                            token_offsets=offsets)
    assert len(chunks) >= 10
    covered = [False] * len(text)
    for n, c in enumerate(chunks):
        assert isinstance(c, Chunk)
        assert c.doc_id == "d1" and c.ordinal == n
        assert c.text == text[c.start : c.end] and c.text.strip()
        assert count(c.text) <= 128
        for i in range(c.start, c.end):
            covered[i] = True
    for a, b in pairwise(chunks):
        assert a.start < b.start and a.end < b.end
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert missing == []


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_neighbours_overlap(doc, count, offsets, strategy):
    text, _ = doc
    kw = dict(strategy=strategy, max_tokens=128, count_tokens=count, token_offsets=offsets)
    chunks = chunk_document("d1", text, overlap=32, **kw)
    shared = [count(text[b.start : a.end]) for a, b in pairwise(chunks) if b.start < a.end]
    assert len(shared) >= len(chunks) // 2
    assert all(0 < s <= 64 for s in shared)
    none = chunk_document("d1", text, overlap=0, **kw)
    assert all(a.end <= b.start for a, b in pairwise(none))


def test_sentence_strategy_never_cuts_a_sentence(doc, count, offsets):
    text, sentences = doc
    starts = {s for s, _ in sentences}
    ends = {e for _, e in sentences}
    for overlap in (0, 24):
        chunks = chunk_document(
            "d1", text, strategy="sentence", max_tokens=96, overlap=overlap, count_tokens=count
        )
        for c in chunks:
            assert c.start in starts and c.end in ends, c


def test_sentence_longer_than_max_tokens_is_split_within_budget(count):
    text = "Short one. " + " ".join(["word"] * 300) + ". Another short one."
    chunks = chunk_document("d", text, strategy="sentence", max_tokens=50, overlap=0, count_tokens=count)
    assert all(count(c.text) <= 50 and c.text == text[c.start : c.end] for c in chunks)
    assert len(chunks) >= 6


def test_tokens_cuts_fixed_windows_where_recursive_cuts_at_boundaries(doc, count, offsets):
    text, sentences = doc
    kw = dict(max_tokens=100, overlap=20, count_tokens=count, token_offsets=offsets)
    windows = chunk_document("d", text, strategy="tokens", **kw)
    recursive = chunk_document("d", text, strategy="recursive", **kw)
    assert [(c.start, c.end) for c in windows] != [(c.start, c.end) for c in recursive]
    token_starts = [s for s, _ in offsets(text)]
    # every window but the last holds 100 tokens and starts 80 tokens after the one before
    # (give or take one: accented letters make tokens that share a start offset)
    firsts = [token_starts.index(c.start) for c in windows]
    assert all(79 <= b - a <= 81 for a, b in pairwise(firsts))
    assert all(len(offsets(c.text)) == 100 for c in windows[:-1])
    ends = {e for _, e in sentences}
    assert sum(c.end in ends for c in windows[:-1]) < len(windows) // 3  # cuts fall anywhere
    whole = chunk_document("d", text, strategy="recursive", **(kw | {"overlap": 0}))
    assert all(c.end in ends for c in whole)  # semchunk keeps sentences whole when they fit
    assert chunk_document("d", text, strategy="sentence", **kw) != recursive


def test_tokens_strategy_needs_offsets(count):
    with pytest.raises(ConfigError, match="token_offsets"):
        chunk_document("d", "Some text.", strategy="tokens", count_tokens=count)


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t  \n"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_empty_documents_give_no_chunks(count, offsets, text, strategy):
    assert chunk_document("d", text, strategy=strategy, count_tokens=count, token_offsets=offsets) == []


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ids_are_deterministic(doc, count, offsets, strategy):
    text, _ = doc
    a = chunk_document("news/42", text, strategy=strategy, count_tokens=count, token_offsets=offsets)
    b = chunk_document("news/42", text, strategy=strategy, count_tokens=count, token_offsets=offsets)
    assert a == b
    assert len({c.chunk_id for c in a}) == len(a)
    for c in a:
        prefix, digest = c.chunk_id.rsplit(":", 1)
        assert prefix == f"news/42#{c.ordinal}" and len(digest) == 16
        int(digest, 16)
    assert changed_chunks(a, b) == ([], [])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_editing_last_paragraph_changes_only_its_chunks(doc, count, offsets, strategy):
    text, _ = doc
    cut = text.rindex("\n\n") + 2
    edited = text[:cut] + "Breaking: the council approved the harbour budget today. " + text[cut:]
    kw = dict(strategy=strategy, max_tokens=128, overlap=16, count_tokens=count, token_offsets=offsets)
    old = chunk_document("d", text, **kw)
    new = chunk_document("d", edited, **kw)
    to_embed, to_delete = changed_chunks(old, new)
    assert 1 <= len(to_embed) <= 3
    assert len(to_embed) < len(new) // 3
    # Everything that changed touches the edited paragraph; everything before it is kept.
    assert all(c.end > cut for c in to_embed)
    old_ids = {c.chunk_id for c in old}
    assert all(c.chunk_id in old_ids for c in new if c.end <= cut - 200)
    assert [c.chunk_id for c in to_embed] == [c.chunk_id for c in new if c.chunk_id not in old_ids]
    new_ids = {c.chunk_id for c in new}
    assert to_delete == [c.chunk_id for c in old if c.chunk_id not in new_ids]
    assert all(old[int(i.split("#")[1].split(":")[0])].end > cut for i in to_delete)
    assert to_delete  # the old chunk(s) of that paragraph must go


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shortened_and_deleted_documents_leave_no_orphans(doc, count, offsets, strategy):
    text, _ = doc
    kw = dict(strategy=strategy, max_tokens=128, overlap=16, count_tokens=count, token_offsets=offsets)
    old = chunk_document("d", text, **kw)
    short = chunk_document("d", text[: len(text) // 2], **kw)
    to_embed, to_delete = changed_chunks(old, short)
    kept = {c.chunk_id for c in short}
    assert set(to_delete) == {c.chunk_id for c in old} - kept
    assert len(to_delete) >= len(old) // 3
    assert len(to_embed) <= 2
    assert len(kept & {c.chunk_id for c in old}) >= len(short) - 2
    assert changed_chunks(old, []) == ([], [c.chunk_id for c in old])


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (dict(max_tokens=0), "max_tokens"),
        (dict(max_tokens=-5, overlap=0), "max_tokens"),
        (dict(max_tokens=32, overlap=32), "overlap"),
        (dict(max_tokens=32, overlap=40), "overlap"),
        (dict(overlap=-1), "overlap"),
        (dict(strategy="paragraph"), "strategy"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_field(count, offsets, settings, field):
    kw = dict(strategy="tokens", count_tokens=count, token_offsets=offsets) | settings
    with pytest.raises(ConfigError, match=rf"chunking\.{field}"):
        chunk_document("d", "Some text.", **kw)
