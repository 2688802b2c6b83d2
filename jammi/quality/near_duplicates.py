"""Near-duplicate text detection with MinHash LSH (pure functions, no Dagster).

Pipeline
--------
1. **Normalise**: Unicode NFKC, casefold, every run of punctuation/symbols becomes a space,
   whitespace collapsed. "ACME  Kettle!" and "acme kettle" are the same text. Null texts
   and texts that normalise to "" are ignored (they are neither duplicates nor counted).
2. **Shingle**: a text becomes the *set* of
   - its words (one shingle per distinct word), and
   - the character 3-grams of every word padded with boundary marks (``^kettle$`` ->
     ``^ke, ket, ett, ttl, tle, le$``).

   Why this design: the set is a bag of words, so *reordered words* give the identical
   set (similarity 1.0). A *typo* (one insertion, deletion or substitution) in a word of a
   typical product text (25-60 words, ~150-300 shingles) touches at most 3 of that word's
   3-grams plus the word shingle, so Jaccard stays around 0.95 for one edit and 0.9 for
   two; whole-text character n-grams would also survive typos, but they lose everything at
   each reordered word boundary and cost more shingles per text. The word shingles keep
   texts that share letters but not words (anagrams, different model numbers) apart.
   Padding lets short words (``4k``, ``a``) and edits at word ends count.
3. **MinHash** (``num_perm`` functions): shingles are hashed once per distinct *word*
   (deterministic 64-bit SipHash of pandas, folded to 32 bits), permuted with the
   multiply-add-shift family ``h_i(x) = ((a_i * x + b_i) mod 2**64) >> 32`` (strongly
   universal for 32-bit x), min-reduced per word, then per text as the min over its
   words' signatures. Hashing words instead of texts makes the cost scale with the
   vocabulary, not with corpus size times text length, so 100k texts take seconds.
4. **LSH**: ``datasketch.MinHashLSH`` banding, tuned for ``threshold - 0.1`` with false
   negatives weighted 0.8, so true pairs at the threshold are almost surely candidates.
5. **Verify**: candidates are filtered by their MinHash estimate (vectorised, a 0.15 margin
   below the threshold) and then by the *exact* Jaccard of their shingle sets; only pairs
   with exact similarity >= ``threshold`` are reported, so the output has no false
   positives with respect to the shingle definition.

Texts with the same normalised form are grouped first (similarity 1.0 to each other); LSH
runs on one representative per group and the pairs are expanded back to row keys.

Threshold: 0.8 (default) admits 1-2 character edits, reorders and case changes in
texts of ~10+ words, while templated product texts that differ in a couple of attribute
words (brand, material, use) mostly fall below it. For very short texts (2-4 words) one
typo can drop Jaccard under 0.8; lower the threshold if titles alone are compared.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from datasketch import LeanMinHash, MinHashLSH
from datasketch.lsh import _optimal_param
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from jammi.quality.outcome import MAX_EXAMPLES, CheckOutcome, Severity

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)
_SEED = 1
_LSH_MARGIN = 0.1  # LSH tuned this far below the threshold: verification removes the extra candidates
_ESTIMATE_MARGIN = 0.15  # MinHash estimate pre-filter margin before the exact Jaccard
_PERM_CHUNK = 32
_DOC_CHUNK = 4096


@dataclass(frozen=True)
class NearDuplicates:
    """`pairs`: key_a, key_b, similarity (exact Jaccard of shingle sets, >= threshold), most
    similar first; `clusters`: connected components of the pairs as key lists, largest first;
    `n_texts`: rows with a non-empty normalised text (the denominator of a duplicate rate)."""

    pairs: pd.DataFrame
    clusters: list[list[str]]
    n_texts: int = 0
    threshold: float = 0.8
    num_perm: int = 128
    extra: dict = field(default_factory=dict)


def normalise(text: str | None) -> str:
    """NFKC, casefold, punctuation to spaces, whitespace collapsed; None -> ""."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    return " ".join(_PUNCT.sub(" ", text).split())


def word_shingles(word: str) -> list[str]:
    """The word itself (marked) and the 3-grams of ``^word$``."""
    padded = f"^{word}$"
    return [f"\x01{word}"] + [padded[i:i + 3] for i in range(max(1, len(padded) - 2))]


def shingles(text: str | None) -> set[str]:
    """The shingle set of a text (after normalisation)."""
    return {s for w in set(normalise(text).split()) for s in word_shingles(w)}


def _empty(threshold: float, num_perm: int, n_texts: int = 0) -> NearDuplicates:
    pairs = pd.DataFrame({"key_a": pd.Series([], dtype=object), "key_b": pd.Series([], dtype=object),
                          "similarity": pd.Series([], dtype=float)})
    return NearDuplicates(pairs, [], n_texts, threshold, num_perm)


def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_SEED)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def _word_tables(vocab: list[str], num_perm: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per word: its MinHash signature (uint32, num_perm) and its sorted shingle hashes."""
    lists = [word_shingles(w) for w in vocab]
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    flat = np.array([s for x in lists for s in x], dtype=object)
    h = pd.util.hash_array(flat, categorize=False)
    x = (h ^ (h >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    a, b = _permutations(num_perm)
    sig = np.empty((len(vocab), num_perm), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for p0 in range(0, num_perm, _PERM_CHUNK):
            p1 = min(num_perm, p0 + _PERM_CHUNK)
            vals = (x[:, None] * a[None, p0:p1] + b[None, p0:p1]) >> np.uint64(32)
            sig[:, p0:p1] = np.minimum.reduceat(vals, starts, axis=0)
    per_word = np.split(x, np.cumsum(lengths)[:-1])
    return sig, per_word


def _signatures(doc_words: list[np.ndarray], word_sig: np.ndarray) -> np.ndarray:
    num_perm = word_sig.shape[1]
    out = np.empty((len(doc_words), num_perm), dtype=np.uint32)
    for d0 in range(0, len(doc_words), _DOC_CHUNK):
        block = doc_words[d0:d0 + _DOC_CHUNK]
        lengths = np.fromiter((len(w) for w in block), dtype=np.int64, count=len(block))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        out[d0:d0 + len(block)] = np.minimum.reduceat(word_sig[np.concatenate(block)], starts, axis=0)
    return out


def _candidates(sig: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    num_perm = sig.shape[1]
    lsh_threshold = max(0.05, threshold - _LSH_MARGIN)
    params = _optimal_param(lsh_threshold, num_perm, 0.2, 0.8)
    if params[0] < 2:
        params = (2, num_perm // 2)
    lsh = MinHashLSH(num_perm=num_perm, params=params)
    hashes = [LeanMinHash(seed=_SEED, hashvalues=row, scheme="affine32") for row in sig]
    with lsh.insertion_session() as session:
        for i, m in enumerate(hashes):
            session.insert(i, m, check_duplication=False)
    left, right = [], []
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j > i:
                left.append(i)
                right.append(j)
    return np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)


def find_near_duplicates(keys: list[str], texts: list[str | None], threshold: float = 0.8,
                         num_perm: int = 128) -> NearDuplicates:
    """Pairs of rows whose texts have shingle-set Jaccard >= `threshold`, and their clusters."""
    keys, texts = list(keys), list(texts)
    if len(keys) != len(texts):
        raise ValueError(f"{len(keys)} keys but {len(texts)} texts")
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")

    # group rows by normalised text; empty texts are ignored
    groups: dict[str, list[int]] = {}
    for row, text in enumerate(texts):
        norm = normalise(text)
        if norm:
            groups.setdefault(norm, []).append(row)
    n_texts = sum(len(g) for g in groups.values())
    if not groups:
        return _empty(threshold, num_perm)
    uniq = list(groups)
    members = list(groups.values())

    vocab_ids: dict[str, int] = {}
    doc_words = []
    for norm in uniq:
        ids = [vocab_ids.setdefault(w, len(vocab_ids)) for w in set(norm.split())]
        doc_words.append(np.asarray(ids, dtype=np.int64))
    word_sig, word_hashes = _word_tables(list(vocab_ids), num_perm)

    edges: list[tuple[int, int, float]] = []  # (rep_i, rep_j, similarity) between groups
    if len(uniq) > 1:
        sig = _signatures(doc_words, word_sig)
        left, right = _candidates(sig, threshold)
        if len(left):
            est = (sig[left] == sig[right]).mean(axis=1)
            keep = est >= threshold - _ESTIMATE_MARGIN
            left, right = left[keep], right[keep]
        cache: dict[int, np.ndarray] = {}

        def shingle_hashes(d: int) -> np.ndarray:
            if d not in cache:
                cache[d] = np.unique(np.concatenate([word_hashes[w] for w in doc_words[d]]))
            return cache[d]

        for i, j in zip(left.tolist(), right.tolist(), strict=True):
            si, sj = shingle_hashes(i), shingle_hashes(j)
            inter = len(np.intersect1d(si, sj, assume_unique=True))
            sim = inter / (len(si) + len(sj) - inter)
            if sim >= threshold:
                edges.append((i, j, sim))

    key_a, key_b, sims, rows_a, rows_b = [], [], [], [], []

    def add(ra: int, rb: int, sim: float) -> None:
        rows_a.append(ra)
        rows_b.append(rb)
        key_a.append(str(keys[ra]))
        key_b.append(str(keys[rb]))
        sims.append(sim)

    for rows in members:  # exact duplicates after normalisation
        for x in range(len(rows)):
            for y in range(x + 1, len(rows)):
                add(rows[x], rows[y], 1.0)
    for i, j, sim in edges:
        for ra in members[i]:
            for rb in members[j]:
                add(min(ra, rb), max(ra, rb), sim)
    if not sims:
        return _empty(threshold, num_perm, n_texts)

    pairs = pd.DataFrame({"key_a": key_a, "key_b": key_b, "similarity": np.round(sims, 6)})
    order = np.lexsort((np.asarray(rows_b), np.asarray(rows_a), -np.asarray(sims)))
    pairs = pairs.iloc[order].reset_index(drop=True)

    n = len(keys)
    graph = coo_matrix((np.ones(len(rows_a)), (rows_a, rows_b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    in_pair = np.zeros(n, dtype=bool)
    in_pair[rows_a] = True
    in_pair[rows_b] = True
    comps: dict[int, list[int]] = {}
    for row in np.flatnonzero(in_pair).tolist():
        comps.setdefault(int(labels[row]), []).append(row)
    ordered = sorted(comps.values(), key=lambda rows: (-len(rows), rows[0]))
    clusters = [[str(keys[r]) for r in rows] for rows in ordered]
    return NearDuplicates(pairs, clusters, n_texts, threshold, num_perm)


def near_duplicate_check(keys: list[str], texts: list[str | None], threshold: float = 0.8,
                         max_rate: float = 0.05, severity: Severity = "warn") -> CheckOutcome:
    """Fails when more than `max_rate` of the non-empty rows belong to a near-duplicate cluster."""
    found = find_near_duplicates(keys, texts, threshold=threshold)
    if found.n_texts == 0:
        return CheckOutcome(
            name="near_duplicates", passed=True, severity=severity, statistic=0.0, threshold=max_rate,
            description="The frame is empty (no non-empty texts): nothing to compare.",
            details={"pairs": 0, "clusters": 0, "largest_cluster": 0, "cluster_examples": []},
        )
    in_clusters = sum(len(c) for c in found.clusters)
    rate = in_clusters / found.n_texts
    passed = rate <= max_rate
    examples = [{"a": a, "b": b, "similarity": float(s)}
                for a, b, s in found.pairs.head(MAX_EXAMPLES).itertuples(index=False, name=None)]
    description = (
        f"{in_clusters} of {found.n_texts} non-empty texts ({rate:.2%}) are in {len(found.clusters)} "
        f"near-duplicate clusters (Jaccard >= {threshold}); allowed at most {max_rate:.2%}."
    )
    return CheckOutcome(
        name="near_duplicates", passed=passed, severity=severity, statistic=float(rate),
        threshold=max_rate, description=description, examples=examples,
        details={
            "pairs": int(len(found.pairs)),
            "clusters": len(found.clusters),
            "largest_cluster": len(found.clusters[0]) if found.clusters else 0,
            "cluster_examples": [c[:10] for c in found.clusters[:5]],
        },
    )
