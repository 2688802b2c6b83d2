"""Blocking: the few record pairs between two sources worth scoring.

Each record proposes at most `k` (= `matching.candidates`) partners from the other source, so
the candidate pairs never exceed k x (left records + right records). Two blockers, unioned:

* Embedding neighbours (`k - k // 4` per record). Each side's vectors go into a USearch HNSW
  index (cosine); every left record asks the right index for its nearest and every right record
  asks the left index, so a record that is nobody's neighbour still brings its own candidates.
* Rare shared tokens (`k // 4` per record). Records that share a token few records hold (a
  surname, an unusual word, a model number such as `dw2000` or `mb-344ll/a`) are paired even
  when their embeddings are far apart. A token is rare when at most `k` records of the two sides
  together hold it, so one token never adds more than k^2/4 pairs. Pairs are weighted by the
  summed IDF of their shared rare tokens and each record keeps its best, from both sides again.

Everything is in row positions of the two frames; the result is sorted and deduplicated.
"""

from __future__ import annotations

import os
import re
import unicodedata

import numpy as np
import scipy.sparse as sp
from usearch.index import Index

_WORD = re.compile(r"[a-z0-9]+")
_CODE = re.compile(r"[a-z0-9]+(?:[-./][a-z0-9]+)*")
_SEPARATORS = re.compile(r"[-./]")
_LETTER = re.compile(r"[a-z]")
_DIGIT = re.compile(r"[0-9]")
MIN_CODE_LENGTH = 3
MIN_TOKEN_LENGTH = 2
EXPANSION_ADD = 64  # HNSW build effort: recall of the k nearest stays ~0.99 on real text embeddings
EXPANSION_SEARCH = 32
CONNECTIVITY = 16
INDEX_DTYPE = "i8"  # blocking only ranks neighbours (scoring recomputes exact cosines): 8-bit is
# ~1.7x faster to build and ~1.5x to search, with the same blocking recall on DBLP-ACM and
# Amazon-Google (bench/fusion_quality.py)


def normalize(text: str | None) -> str:
    """Casefolded, accents stripped, punctuation kept (codes need `-`, `.` and `/`)."""
    if not text:
        return ""
    text = str(text)
    if text.isascii():
        return text.casefold()
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).casefold()


def words(text: str | None) -> list[str]:
    """Alphanumeric runs of the normalised text."""
    return _WORD.findall(normalize(text))


def codes(text: str | None) -> frozenset[str]:
    """Model-number-like tokens: letters and digits mixed, separators dropped, length >= 3.

    `MB-344LL/A` -> `mb344lla`; `v2.1` -> `v21`; `2007` and `premier` are not codes."""
    found = set()
    for raw in _CODE.findall(normalize(text)):
        if raw.isalpha() or raw.isdigit():
            continue
        token = _SEPARATORS.sub("", raw)
        if len(token) >= MIN_CODE_LENGTH and _LETTER.search(token) and _DIGIT.search(token):
            found.add(token)
    return frozenset(found)


def _pairs(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sorted unique [row, col] pairs (one int64 code per pair: a 1-D unique is much faster)."""
    if not len(rows):
        return np.zeros((0, 2), dtype=np.int64)
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    width = int(cols.max()) + 1
    codes = np.unique(rows * width + cols)
    return np.stack([codes // width, codes % width], axis=1)


def _searchable(vecs: np.ndarray) -> np.ndarray:
    """Rows with a non-zero vector (an empty text embeds to zeros and matches nothing)."""
    return np.flatnonzero(np.abs(vecs).sum(axis=1) > 0)


class VectorIndex:
    """A USearch HNSW index over one source's non-zero vectors, keyed by row position. Built once
    per source and fusion run, then searched by every other source."""

    def __init__(self, vectors: np.ndarray):
        self.rows = _searchable(vectors)
        self.index: Index | None = None
        if len(self.rows):
            self.index = Index(ndim=vectors.shape[1], metric="cos", dtype=INDEX_DTYPE,
                               connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD,
                               expansion_search=EXPANSION_SEARCH)
            self.index.add(self.rows.astype(np.uint64),
                           np.ascontiguousarray(vectors[self.rows], dtype=np.float32),
                           threads=os.cpu_count() or 1)


def _knn(base: np.ndarray | VectorIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(query row, base row) of each query's k nearest base rows in a USearch index."""
    index = base if isinstance(base, VectorIndex) else VectorIndex(base)
    query_rows = _searchable(queries)
    k = min(k, len(index.rows))
    if k == 0 or not len(query_rows) or index.index is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    threads = os.cpu_count() or 1
    index.index.expansion_search = max(EXPANSION_SEARCH, 2 * k)
    found = index.index.search(np.ascontiguousarray(queries[query_rows], dtype=np.float32), k,
                               threads=threads)
    keys = np.asarray(found.keys).reshape(len(query_rows), -1)
    counts = np.asarray(found.counts).reshape(-1)
    valid = np.arange(keys.shape[1])[None, :] < counts[:, None]
    q = np.repeat(query_rows, keys.shape[1]).reshape(keys.shape)
    return q[valid].astype(np.int64), keys[valid].astype(np.int64)


def embedding_candidates(
    left_vecs: np.ndarray,
    right_vecs: np.ndarray,
    k: int,
    indexes: tuple[VectorIndex | None, VectorIndex | None] = (None, None),
) -> np.ndarray:
    """[left, right] pairs: each side's k nearest neighbours on the other side, unioned. Pass
    prebuilt `indexes` (left, right) to reuse them across source pairs."""
    left_index, right_index = indexes
    lq, rb = _knn(right_index or right_vecs, left_vecs, k)
    rq, lb = _knn(left_index or left_vecs, right_vecs, k)
    return _pairs(np.concatenate([lq, lb]), np.concatenate([rb, rq]))


def _token_matrix(docs: list[set[str]], vocab: dict[str, int], weights: np.ndarray) -> sp.csr_matrix:
    rows, cols = [], []
    for i, doc in enumerate(docs):
        for tok in doc:
            j = vocab.get(tok)
            if j is not None:
                rows.append(i)
                cols.append(j)
    data = weights[np.asarray(cols, dtype=np.int64)] if cols else np.zeros(0)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(docs), len(vocab)))


def _top_k_per_row(m: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    m = m.tocsr()
    rows, cols = [], []
    for i in range(m.shape[0]):
        start, end = m.indptr[i], m.indptr[i + 1]
        if start == end:
            continue
        idx, val = m.indices[start:end], m.data[start:end]
        if len(idx) > k:
            keep = np.argpartition(-val, k - 1)[:k]
            idx = idx[keep]
        rows.append(np.full(len(idx), i, dtype=np.int64))
        cols.append(idx.astype(np.int64))
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def record_tokens(texts: list[str]) -> list[set[str]]:
    """Blocking tokens of each record text: its words (length >= 2) and its codes."""
    return [{w for w in words(t) if len(w) >= MIN_TOKEN_LENGTH} | set(codes(t)) for t in texts]


def token_candidates(
    left_tokens: list[set[str]], right_tokens: list[set[str]], max_df: int, k: int | None = None
) -> np.ndarray:
    """[left, right] pairs sharing a rare token (held by <= `max_df` records), the `k` (default
    `max_df`) best per record each way."""
    k = max_df if k is None else k
    if k <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    df: dict[str, list[int]] = {}
    for side, docs in enumerate((left_tokens, right_tokens)):
        for doc in docs:
            for tok in doc:
                df.setdefault(tok, [0, 0])[side] += 1
    n = len(left_tokens) + len(right_tokens)
    rare = [t for t, (a, b) in df.items() if a and b and a + b <= max_df]
    if not rare:
        return np.zeros((0, 2), dtype=np.int64)
    vocab = {t: i for i, t in enumerate(rare)}
    idf = np.log(n / np.array([sum(df[t]) for t in rare], dtype=np.float64))
    left = _token_matrix(left_tokens, vocab, np.sqrt(idf))
    right = _token_matrix(right_tokens, vocab, np.sqrt(idf))
    shared = (left @ right.T).tocsr()  # summed IDF of the rare tokens each pair shares
    lr, rr = _top_k_per_row(shared, k)
    rl, ll = _top_k_per_row(shared.T.tocsr(), k)
    return _pairs(np.concatenate([lr, ll]), np.concatenate([rr, rl]))


def candidates(
    left_vecs: np.ndarray,
    right_vecs: np.ndarray,
    left_texts: list[str],
    right_texts: list[str],
    k: int,
    indexes: tuple[VectorIndex | None, VectorIndex | None] = (None, None),
) -> np.ndarray:
    """Union of embedding neighbours and rare-token pairs, as sorted unique [left, right] rows."""
    by_token_k = k // 4
    by_vector = embedding_candidates(left_vecs, right_vecs, k - by_token_k, indexes)
    by_token = token_candidates(record_tokens(left_texts), record_tokens(right_texts), k, by_token_k)
    return _pairs(np.concatenate([by_vector[:, 0], by_token[:, 0]]),
                  np.concatenate([by_vector[:, 1], by_token[:, 1]]))
