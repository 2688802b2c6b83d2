"""Only the part of a long text the model sees is tokenized: the cut text must give the model
exactly the input the whole text gives, for awkward texts too, and tokenizers that do not split
on whitespace must see whole texts."""

from __future__ import annotations

import random

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from jammi.embedding.model import resolve_model_path
from jammi.embedding.window import MARGIN_WORDS, splits_on_whitespace, window_text, window_texts
from jammi.spec.project import DEFAULT_MODEL

WINDOW = 256


@pytest.fixture(scope="module")
def minilm_tokenizer() -> Tokenizer:
    from pathlib import Path

    tok = Tokenizer.from_file(str(Path(resolve_model_path(DEFAULT_MODEL)) / "tokenizer.json"))
    tok.enable_truncation(max_length=WINDOW)
    tok.no_padding()
    return tok


def awkward_texts() -> list[str]:
    """Long texts of the kinds that tokenize unevenly: punctuation runs, numbers, accents, CJK,
    control characters, words longer than the vocabulary's pieces, no-letter runs."""
    rng = random.Random(7)
    pieces = ["battery", "life", "of", "48h", "$1,999.00", "café", "naïve", "--", "...", "东京都",
              "\x00\x07ctrl", "Überschall", "supercalifragilisticexpialidocious", "e-mail:", "(c)",
              "™", "x86_64", "🙂", "a.b.c.d", "\t", "１２３", "\u0301"]
    texts = [" ".join(rng.choice(pieces) for _ in range(rng.randint(200, 900))) for _ in range(60)]
    texts.append("word " * 263 + "tail")  # exactly at the edge of the cut
    texts.append("x" * 5000)  # no spaces at all: kept whole
    texts.append("a" * 10 + " " * 3000 + "b")  # few words, many characters
    return texts


def test_window_text_cuts_after_enough_words_and_keeps_short_texts_whole():
    words = WINDOW + MARGIN_WORDS
    long = " ".join(f"w{i}" for i in range(words + 50))
    cut = window_text(long, WINDOW)
    assert cut.split() == [f"w{i}" for i in range(words)]
    short = "a short text with a few words"
    assert window_text(short, WINDOW) is short
    assert window_text("x" * 5000, WINDOW) == "x" * 5000
    assert window_texts([long], WINDOW, enabled=False) == [long]


def test_cut_text_tokenizes_to_the_same_model_input(minilm_tokenizer):
    texts = awkward_texts()
    assert splits_on_whitespace(minilm_tokenizer)
    whole = minilm_tokenizer.encode_batch(texts)
    cut = minilm_tokenizer.encode_batch(window_texts(texts, WINDOW, enabled=True))
    shortened = sum(len(c) < len(t) for c, t in zip(window_texts(texts, WINDOW, True), texts, strict=True))
    assert shortened >= 35  # the test exercises the cut, not only the whole-text path
    for text, a, b in zip(texts, whole, cut, strict=True):
        assert a.ids == b.ids, text[:60]


def test_tokenizers_that_do_not_split_on_whitespace_see_whole_texts():
    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    assert not splits_on_whitespace(tok)  # no pre-tokenizer
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(use_regex=False)
    assert not splits_on_whitespace(tok)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(use_regex=True)
    assert splits_on_whitespace(tok)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(split=False)
    assert not splits_on_whitespace(tok)


def test_encoder_vectors_of_long_texts_equal_the_models_own(encoder):
    rng = random.Random(3)
    vocab = "the quick brown fox jumps over a lazy dog while 42 wireless headphones charge".split()
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(300, 700))) for _ in range(6)]
    ours = encoder.encode(texts)
    theirs = encoder.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert all(n > encoder.max_seq_length for n in encoder.token_counts(texts))
    assert encoder.token_counts(["hello world"]) == [4]
