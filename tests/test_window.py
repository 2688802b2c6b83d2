"""Only the part of a long text the model sees is tokenized: the cut text must give the model
exactly the input the whole text gives, for awkward texts too, and tokenizers that do not split
on whitespace must see whole texts."""

from __future__ import annotations

import random

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from jammi.embedding.model_files import resolve_model_path
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


@pytest.mark.slow
def test_encoder_vectors_of_long_texts_equal_the_models_own(encoder):
    rng = random.Random(3)
    vocab = "the quick brown fox jumps over a lazy dog while 42 wireless headphones charge".split()
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(300, 700))) for _ in range(6)]
    ours = encoder.encode(texts)
    theirs = encoder.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert all(n > encoder.max_seq_length for n in encoder.token_counts(texts))
    assert encoder.token_counts(["hello world"]) == [4]


@pytest.mark.slow
def test_counted_ids_are_encoded_once_and_give_the_models_vectors(encoder):
    """Counting keeps the ids; encoding uses each once (the cache drains) and gives what
    `SentenceTransformer.encode` gives, whether the ids were kept or not."""
    assert encoder._pre is not None  # the packaged MiniLM is a plain text model
    rng = random.Random(5)
    vocab = "red kettle with a long cord 1.7 litre steel lid, boils fast; auto-off".split()
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 500))) for _ in range(40)]
    counts = encoder.token_counts(texts)
    assert [n > encoder.max_seq_length for n in counts] == [
        len(encoder.tokenizer(t)["input_ids"]) > encoder.max_seq_length for t in texts]
    kept = np.vstack([encoder.encode(texts[i:i + 8]) for i in range(0, 40, 8)])
    assert encoder._pre._cached_tokens == 0 and not encoder._pre._cache
    fresh = encoder.encode(texts)  # nothing kept now: tokenized on the spot
    theirs = encoder.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(kept, theirs, atol=1e-5)
    np.testing.assert_allclose(fresh, theirs, atol=1e-5)


@pytest.mark.slow
def test_kept_ids_stay_within_their_budget(encoder, monkeypatch):
    from jammi.embedding import pretokenized

    monkeypatch.setattr(pretokenized, "MAX_CACHED_TOKENS", 50)
    texts = [f"text number {i} about kettles and lamps" for i in range(30)]
    encoder.token_counts(texts)
    assert 0 < encoder._pre._cached_tokens <= 50
    theirs = encoder.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(encoder.encode(texts), theirs, atol=1e-5)
    assert encoder._pre._cached_tokens == 0


@pytest.mark.slow
def test_a_table_tokenized_on_threads_gives_the_single_calls_ids(encoder, monkeypatch):
    """The length sort's count of a whole table is tokenized in contiguous parts on several
    threads: the ids, type ids and cuts equal one call's, text by text, in order."""
    from jammi.embedding import pretokenized

    rng = random.Random(11)
    texts = awkward_texts() + [" ".join(rng.choice(["lamp", "kettle", "48h", "café"])
                                        for _ in range(rng.randint(1, 40))) for _ in range(140)]
    pools = []

    class Recorded(pretokenized.ThreadPoolExecutor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append(self._max_workers)

    pre = encoder._pre
    monkeypatch.setattr(pretokenized, "ThreadPoolExecutor", Recorded)
    one = pre._encode(texts)
    assert pools == []  # 203 texts: under two threads' worth, one call
    monkeypatch.setattr(pretokenized, "tokenizing_threads", lambda n: 3)  # 203 texts: 68 + 68 + 67
    threaded = pre._encode(texts)
    assert pools == [3]
    assert len(threaded) == len(one) == len(texts)
    for (ids, types, cut), (ids2, types2, cut2) in zip(one, threaded, strict=True):
        assert cut == cut2 and ids.tolist() == ids2.tolist() and types.tolist() == types2.tolist()
    assert sum(cut for _ids, _types, cut in one) > 0  # the awkward texts reach the window


def test_tokenizing_threads_need_enough_texts_each(monkeypatch):
    from jammi.embedding import pretokenized

    monkeypatch.setattr(pretokenized.os, "cpu_count", lambda: 4)
    per = pretokenized.TEXTS_PER_THREAD
    assert [pretokenized.tokenizing_threads(n) for n in (0, per - 1, 2 * per - 1, 2 * per, 100 * per)] \
        == [1, 1, 1, 2, 4]


def test_only_plain_text_models_are_fed_pretokenized():
    from jammi.embedding.pretokenized import usable

    class Tok:
        is_fast = True

        class backend_tokenizer:  # noqa: N801 - stands in for tokenizers.Tokenizer
            padding = {"direction": "right"}
            truncation = {"direction": "right"}

    def model(*names, tokenizer=Tok):
        class Model(list):
            def preprocess(self, texts):
                return {}
        built = Model(type(n, (), {})() for n in names)
        built.tokenizer = tokenizer
        return built

    assert usable(model("Transformer", "Pooling", "Normalize"))
    assert usable(model("Transformer", "Pooling"))
    assert not usable(model("Transformer", "Pooling", "Dense", "Normalize"))

    class Left(Tok):
        class backend_tokenizer:  # noqa: N801
            padding = {"direction": "left"}
            truncation = None

    assert not usable(model("Transformer", "Pooling", tokenizer=Left))
