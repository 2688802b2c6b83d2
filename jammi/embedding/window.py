"""The part of a text the model sees. A model reads at most `max_seq_length` tokens; tokenizing a
3,000-character description in full to keep its first 256 tokens wastes most of the tokenizer's
time (a tenth of a long-text run on a CPU). When the tokenizer splits on whitespace before its
model runs (WordPiece behind BertPreTokenizer, byte-level BPE, Metaspace), every word of the text
gives at least one token, and the tokens of a word do not depend on the words after it; so a text
cut after more words than the window holds tokenizes to the same first tokens as the whole text,
and truncated to the window it is the same input. Tokenizers that do not split on whitespace
(or cannot be inspected) see whole texts.
"""

from __future__ import annotations

import re

MARGIN_WORDS = 8  # words kept beyond the window: more than the special tokens a model adds
_WORD = re.compile(r"\S*\w\S*")  # a run of non-space characters with a letter or digit in it
SPLITTING_PRE_TOKENIZERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}


def splits_on_whitespace(backend_tokenizer) -> bool:
    """Whether `backend_tokenizer` (a `tokenizers.Tokenizer`) pre-splits text at whitespace, so a
    word's tokens never depend on the text after it."""
    pre = getattr(backend_tokenizer, "pre_tokenizer", None)
    name = type(pre).__name__
    if name in SPLITTING_PRE_TOKENIZERS:
        return True
    if name == "ByteLevel":
        return bool(getattr(pre, "use_regex", False))
    if name == "Metaspace":
        return bool(getattr(pre, "split", False))
    return False


def window_text(text: str, max_tokens: int) -> str:
    """`text` cut just after its (max_tokens + MARGIN_WORDS)-th word, or whole when it has no more
    words than that. Each word yields at least one token, so the cut keeps more tokens than the
    window and the truncated tokenization is unchanged."""
    words = max_tokens + MARGIN_WORDS
    if len(text) <= 2 * words:  # cannot hold that many words (each needs a character and a space)
        return text
    count = 0
    for match in _WORD.finditer(text):
        count += 1
        if count == words:
            return text[: match.end()]
    return text


def window_texts(texts: list[str], max_tokens: int, enabled: bool) -> list[str]:
    if not enabled:
        return texts
    return [window_text(t, max_tokens) for t in texts]
