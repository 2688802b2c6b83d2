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
4. **LSH**: banding with ``datasketch``'s optimal parameters for ``threshold - 0.1`` with
   false negatives weighted 0.8, so true pairs at the threshold are almost surely candidates
   (``lsh_bands``: bands as sorted row orders, queried one text at a time; a text examines
   at most ``MAX_CANDIDATES`` later texts, those sharing the most bands first).
5. **Verify**: a text's candidates already in its cluster are skipped; the rest are filtered
   by their MinHash estimate (vectorised, a 0.15 margin below the threshold) and then by the
   *exact* Jaccard of their shingle sets (vectorised per text); only pairs with exact
   similarity >= ``threshold`` are reported, so the output has no false positives with
   respect to the shingle definition.

Texts with the same normalised form are grouped first (similarity 1.0 to each other); LSH
runs on one representative per group, a union-find over groups makes the clusters
(``group_links``), and pairs are expanded back to row keys only as far as the ``MAX_PAIRS``
most similar ones. Memory is O(rows + MAX_PAIRS), whatever the number of pairs: 100k
identical texts are one group and 5e9 pairs, counted, not listed.

Threshold: 0.8 (default) admits 1-2 character edits, reorders and case changes in
texts of ~10+ words, while templated product texts that differ in a couple of attribute
words (brand, material, use) mostly fall below it. For very short texts (2-4 words) one
typo can drop Jaccard under 0.8; lower the threshold if titles alone are compared.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from jammi.quality.group_links import Components, TopPairs
from jammi.quality.outcome import MAX_EXAMPLES, CheckOutcome, Severity

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)
_SEED = 1
_LSH_MARGIN = 0.1  # LSH tuned this far below the threshold: verification removes the extra candidates
_ESTIMATE_MARGIN = 0.15  # MinHash estimate pre-filter margin before the exact Jaccard
_PERM_CHUNK = 32
_DOC_CHUNK = 4096
MAX_CANDIDATES = 1_000  # LSH candidates one text examines (most shared bands first)
MAX_PAIRS = 10_000  # most similar pairs kept in `pairs`; `extra["pairs_total"]` counts them all


@dataclass(frozen=True)
class NearDuplicates:
    """`pairs`: key_a, key_b, similarity (exact Jaccard of shingle sets, >= threshold), most
    similar first, at most MAX_PAIRS of them; `clusters`: connected components as key lists,
    largest first (every row of a cluster, however large); `n_texts`: rows with a non-empty
    normalised text (the denominator of a duplicate rate); `extra`: `pairs_total` (all pairs
    found, kept or not) and `rows_capped` (rows whose text hit MAX_CANDIDATES)."""

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


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices of the concatenated slices [start, start + length)."""
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))


def _shingle_table(doc_words: list[np.ndarray], word_hashes: list[np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Every text's sorted distinct shingle hashes (uint32), as one flat array and offsets."""
    word_len = np.fromiter((len(h) for h in word_hashes), dtype=np.int64, count=len(word_hashes))
    word_flat = np.concatenate(word_hashes)
    word_start = np.cumsum(word_len) - word_len
    flat, counts = [], []
    for d0 in range(0, len(doc_words), _DOC_CHUNK):
        block = doc_words[d0:d0 + _DOC_CHUNK]
        n_words = np.fromiter((len(w) for w in block), dtype=np.int64, count=len(block))
        words = np.concatenate(block)
        doc = np.repeat(np.repeat(np.arange(len(block), dtype=np.uint64), n_words), word_len[words])
        key = np.sort((doc << np.uint64(32)) | word_flat[_ranges(word_start[words], word_len[words])])
        key = key[np.concatenate([[True], key[1:] != key[:-1]])]
        flat.append((key & np.uint64(0xFFFFFFFF)).astype(np.uint32))
        counts.append(np.bincount((key >> np.uint64(32)).astype(np.int64), minlength=len(block)))
    lengths = np.concatenate(counts)
    return np.concatenate(flat), np.concatenate([[0], np.cumsum(lengths)])


def _verify(i: int, cand: np.ndarray, sig: np.ndarray, flat: np.ndarray, offsets: np.ndarray,
            threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The candidates of text i whose exact Jaccard is >= threshold, and those similarities;
    the MinHash estimate (vectorised) drops the hopeless ones first."""
    est = np.count_nonzero(sig[cand] == sig[i], axis=1) / sig.shape[1]
    cand = cand[est >= threshold - _ESTIMATE_MARGIN]
    if not len(cand):
        return cand, np.empty(0)
    si = flat[offsets[i]:offsets[i + 1]]
    lengths = offsets[cand + 1] - offsets[cand]
    other = flat[_ranges(offsets[cand], lengths)]
    pos = np.minimum(np.searchsorted(si, other), len(si) - 1)
    inter = np.add.reduceat((si[pos] == other).astype(np.int64), np.cumsum(lengths) - lengths)
    sim = inter / (len(si) + lengths - inter)
    keep = sim >= threshold
    return cand[keep], sim[keep]


def find_near_duplicates(keys: list[str], texts: list[str | None], threshold: float = 0.8,
                         num_perm: int = 128) -> NearDuplicates:
    """Row pairs whose texts have shingle-set Jaccard >= `threshold`, and their clusters.

    Memory and time stay bounded on duplicate-heavy and templated frames: rows with one
    normalised text are one node of a union-find; a candidate already connected to a text is
    not verified again; a text examines at most MAX_CANDIDATES candidates; `pairs` keeps the
    MAX_PAIRS most similar pairs. `extra["pairs_total"]` counts every pair found (C(g, 2) per
    group of g identical texts plus |g_i| * |g_j| per verified edge; pairs inside a component
    that were not verified are not counted, so it is a lower bound of the pairs above the
    threshold); `extra["rows_capped"]` counts the rows whose text had more candidates than
    the cap (a pair past it is missed only when no other path connects the two texts).
    """
    keys, texts = list(keys), list(texts)
    if len(keys) != len(texts):
        raise ValueError(f"{len(keys)} keys but {len(texts)} texts")
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")

    # group rows by normalised text; empty texts are ignored
    groups: dict[str, list[int]] = {}
    norm_of: dict[str, str] = {}  # a repeated text is normalised once
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            norm = normalise(text)
        elif text in norm_of:
            norm = norm_of[text]
        else:
            norm = norm_of[text] = normalise(text)
        if norm:
            groups.setdefault(norm, []).append(row)
    n_texts = sum(len(g) for g in groups.values())
    if not groups:
        return _empty(threshold, num_perm)
    uniq = list(groups)
    members = [np.asarray(rows, dtype=np.int64) for rows in groups.values()]
    del groups
    sizes = np.fromiter((len(m) for m in members), dtype=np.int64, count=len(members))

    components = Components(len(uniq))
    top = TopPairs(MAX_PAIRS)
    pairs_total = int((sizes * (sizes - 1) // 2).sum())
    for rows in members:
        if len(rows) > 1:
            top.add_group(rows)
    rows_capped = 0
    if len(uniq) > 1:
        # datasketch (under lsh_bands) imports scipy.integrate: half a second, paid only here
        from jammi.quality.lsh_bands import Bands, band_params

        vocab_ids: dict[str, int] = {}
        doc_words = []
        for norm in uniq:
            ids = [vocab_ids.setdefault(w, len(vocab_ids)) for w in set(norm.split())]
            doc_words.append(np.asarray(ids, dtype=np.int64))
        word_sig, word_hashes = _word_tables(list(vocab_ids), num_perm)
        sig = _signatures(doc_words, word_sig)
        bands = Bands(sig, *band_params(max(0.05, threshold - _LSH_MARGIN), num_perm), MAX_CANDIDATES)
        flat, offsets = _shingle_table(doc_words, word_hashes)
        for i in bands.with_candidates.tolist():
            cand, capped = bands.forward(i)
            rows_capped += int(sizes[i]) if capped else 0
            cand = cand[components.root[cand] != components.root[i]]
            if not len(cand):
                continue
            linked, sims = _verify(i, cand, sig, flat, offsets, threshold)
            for j, sim in zip(linked.tolist(), sims.tolist(), strict=True):
                components.union(i, j)
                pairs_total += int(sizes[i] * sizes[j])
                top.add_edge(members[i], members[j], sim)
    extra = {"pairs_total": pairs_total, "rows_capped": rows_capped}
    if pairs_total == 0:
        return replace(_empty(threshold, num_perm, n_texts), extra=extra)

    sims, rows_a, rows_b = top.arrays()
    pairs = pd.DataFrame({"key_a": [str(keys[r]) for r in rows_a.tolist()],
                          "key_b": [str(keys[r]) for r in rows_b.tolist()],
                          "similarity": np.round(sims, 6)})
    return NearDuplicates(pairs, _clusters(keys, members, sizes, components.root), n_texts, threshold,
                          num_perm, extra)


def _clusters(keys: list[str], members: list[np.ndarray], sizes: np.ndarray, root: np.ndarray
              ) -> list[list[str]]:
    """Keys of every component with at least two rows, rows ascending, largest first."""
    comp_rows = np.bincount(root, weights=sizes, minlength=len(root))
    linked = np.flatnonzero(comp_rows[root] >= 2)  # groups in a component of 2+ rows
    rows = np.concatenate([members[g] for g in linked.tolist()])
    labels = np.repeat(root[linked], sizes[linked])
    order = np.lexsort((rows, labels))
    rows, labels = rows[order], labels[order]
    cuts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    comps = np.split(rows, cuts)
    comps.sort(key=lambda c: (-len(c), int(c[0])))
    return [[str(keys[r]) for r in c.tolist()] for c in comps]


def near_duplicate_check(keys: list[str], texts: list[str | None], threshold: float = 0.8,
                         max_rate: float = 0.05, severity: Severity = "warn") -> CheckOutcome:
    """Fails when more than `max_rate` of the non-empty rows belong to a near-duplicate cluster."""
    found = find_near_duplicates(keys, texts, threshold=threshold)
    if found.n_texts == 0:
        return CheckOutcome(
            name="near_duplicates", passed=True, severity=severity, statistic=0.0, threshold=max_rate,
            description="The frame is empty (no non-empty texts): nothing to compare.",
            details={"pairs": 0, "clusters": 0, "largest_cluster": 0, "cluster_examples": [],
                     "rows_capped": 0, "max_candidates": MAX_CANDIDATES},
        )
    in_clusters = sum(len(c) for c in found.clusters)
    rate = in_clusters / found.n_texts
    passed = rate <= max_rate
    examples = [{"a": a, "b": b, "similarity": float(s)}
                for a, b, s in found.pairs.head(MAX_EXAMPLES).itertuples(index=False, name=None)]
    capped = found.extra.get("rows_capped", 0)
    description = (
        f"{in_clusters} of {found.n_texts} non-empty texts ({rate:.2%}) are in {len(found.clusters)} "
        f"near-duplicate clusters (Jaccard >= {threshold}); allowed at most {max_rate:.2%}."
    )
    if capped:
        description += (f" {capped} rows had more than {MAX_CANDIDATES} LSH candidates and were "
                        f"compared with {MAX_CANDIDATES} of them only, so the rate may be understated.")
    return CheckOutcome(
        name="near_duplicates", passed=passed, severity=severity, statistic=float(rate),
        threshold=max_rate, description=description, examples=examples,
        details={
            "pairs": int(found.extra.get("pairs_total", len(found.pairs))),
            "clusters": len(found.clusters),
            "largest_cluster": len(found.clusters[0]) if found.clusters else 0,
            "cluster_examples": [c[:10] for c in found.clusters[:5]],
            "rows_capped": int(capped),
            "max_candidates": MAX_CANDIDATES,
        },
    )
