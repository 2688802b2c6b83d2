"""Pairwise scoring: per-field similarities in [0, 1] combined with the embedding cosine.

Comparators (the values of `matching.fields`):

* `text`: the mean of rapidfuzz `token_set_ratio` on casefolded, accent-free words (tolerant of
  typos and of one side holding extra words) and the IDF-weighted cosine of the two word sets,
  IDF counted over both sides' values of the field (so a shared rare word such as a product
  line counts for much more than a shared "software" or "edition").
* `name`: person lists ("A. Smith, Bo Li and C. Wu"): the mean of `token_set_ratio` and
  `token_sort_ratio` (which charges for missing people) over the sorted surnames (last word of
  each person), so initials and first-name spellings do not matter.
* `code`: the model-number-like tokens of each record (letters and digits mixed, length >= 3,
  separators dropped; a value that is one token with a digit, such as `121066`, counts whole),
  found in the code field and in the record's other compared text (a catalogue that leaves its
  model number column empty often writes the code in the title), except free text (`free_text`:
  a field whose values run past FREE_TEXT_WORDS words): 1 when the two records share one, 0
  when both have codes and share none; no evidence when either has none.
* `number`: 1 - |a - b| / max(|a|, |b|), floored at 0; no evidence when either is null or 0
  (catalogues write 0 for "unknown").
* `year`: 1 when equal, else 0.
* `exact`: 1 when equal ignoring case, spaces and punctuation (`310/246-1501` is
  `310-246-1501`), else 0.

A null on either side is usually not evidence: the field drops out of that pair's score. One
exception, for `text` fields: when one side is null and the other's *key word* (its word that
the fewest distinct values of the field hold, e.g. `encore` in "encore software", `magix` in
"magix entertainment") appears anywhere in the other record's compared text, that counts as a
match (1.0). Feeds often fold the manufacturer into the product name ("encore software 10023 -
hoyle mahjongg") and leave the manufacturer column empty; the absence of the word is still no
evidence either way. The score is
the weighted mean of the fields that have evidence and the cosine of the two embeddings (floored
at 0), each weight taken from `WEIGHTS`. A `text` field whose two sides both carry numbers
(versions, years, sizes) that disagree, e.g. "office 2003" vs "office 2007", is multiplied by
`NUMBER_CLASH`: such titles read alike but name different things.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd
import scipy.sparse as sp
from rapidfuzz import fuzz, process

from jammi.fusion.blocking import MIN_CODE_LENGTH, codes, normalize, words

WEIGHTS = {"text": 1.0, "name": 1.0, "code": 1.0, "number": 0.25, "year": 0.5, "exact": 1.0}
COSINE_WEIGHT = 1.0
NUMBER_CLASH = 0.8
FREE_TEXT_WORDS = 20  # a text field longer than this (median words) is free text: no codes read from it
_PERSON_SPLIT = re.compile(r"\s*(?:,|;|&|\band\b)\s*")
_DIGITS = re.compile(r"^[0-9]+$")
_ANY_DIGIT = re.compile(r"[0-9]")
_SEPARATORS = re.compile(r"[-./]")


def _strings(values: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) else str(v) for v in values.astype(object)]


def _text_form(value: str | None) -> str | None:
    if value is None:
        return None
    text = " ".join(words(value))
    return text or None


def _surnames(value: str | None) -> str | None:
    if value is None:
        return None
    people = [p for p in _PERSON_SPLIT.split(value) if p.strip()]
    last = sorted(w[-1] for w in (words(p) for p in people) if w)
    return " ".join(last) or None


def _numbers(text: str | None) -> frozenset[str]:
    return frozenset(w.lstrip("0") or "0" for w in (text or "").split() if _DIGITS.match(w))


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _set_ratio(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """rapidfuzz token_set_ratio per pair in [0, 1] (NaN where either side is missing)."""
    out = np.full(len(left), np.nan)
    both = (left != None) & (right != None)  # noqa: E711 (element-wise on object arrays)
    if both.any():
        out[both] = process.cpdist(left[both].tolist(), right[both].tolist(), scorer=fuzz.token_set_ratio,
                                   processor=None, workers=-1, dtype=np.float32) / 100.0
    return out


def _ratio_mean(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Mean of token_set and token_sort ratios per pair (NaN where either side is missing)."""
    out = np.full(len(left), np.nan)
    both = (left != None) & (right != None)  # noqa: E711 (element-wise on object arrays)
    if both.any():
        a, b = left[both].tolist(), right[both].tolist()
        kw = {"processor": None, "workers": -1, "dtype": np.float32}
        set_ratio = process.cpdist(a, b, scorer=fuzz.token_set_ratio, **kw)
        sort_ratio = process.cpdist(a, b, scorer=fuzz.token_sort_ratio, **kw)
        out[both] = (set_ratio.astype(np.float64) + sort_ratio) / 200.0
    return out


def _idf_cosine(left: np.ndarray, right: np.ndarray, li: np.ndarray, ri: np.ndarray) -> np.ndarray:
    """IDF-weighted cosine of binary word sets per pair; `left`/`right` hold each record's text."""
    docs = [set(t.split()) if t else set() for t in (*left, *right)]
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, doc in enumerate(docs):
        for tok in doc:
            rows.append(i)
            cols.append(vocab.setdefault(tok, len(vocab)))
    if not vocab:
        return np.full(len(li), np.nan)
    cols_a = np.asarray(cols, dtype=np.int64)
    df = np.bincount(cols_a, minlength=len(vocab))
    idf = np.log(len(docs) / df)
    rows_a = np.asarray(rows, dtype=np.int64)
    m = sp.csr_matrix((idf[cols_a], (rows_a, cols_a)), shape=(len(docs), len(vocab)))
    a, b = m[: len(left)], m[len(left):]
    mass_a, mass_b = np.asarray(a.sum(axis=1)).ravel(), np.asarray(b.sum(axis=1)).ravel()
    shared = np.asarray(a[li].multiply(b[ri] > 0).sum(axis=1)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass_a[li] * mass_b[ri] > 0, shared / np.sqrt(mass_a[li] * mass_b[ri]), 0.0)


def _disjoint(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Per pair of frozensets: both non-empty and sharing nothing."""
    out = np.zeros(len(left), dtype=bool)
    both = np.flatnonzero(np.fromiter((bool(a) for a in left), bool, len(left))
                          & np.fromiter((bool(b) for b in right), bool, len(right)))
    out[both] = [a.isdisjoint(b) for a, b in zip(left[both], right[both], strict=True)]
    return out


def _key_word_evidence(field: str, left: Prepared, right: Prepared, li: np.ndarray, ri: np.ndarray,
                       sim: np.ndarray) -> np.ndarray:
    """`sim` with 1.0 where one side of `field` is null and the other side's key word appears in
    the null side's compared text (module docstring)."""
    a, b = left.values[field][li], right.values[field][ri]
    one = np.flatnonzero((a == None) != (b == None))  # noqa: E711 (element-wise on object arrays)
    if not len(one):
        return sim
    distinct = {v for v in (*left.values[field], *right.values[field]) if v}
    df = Counter(t for v in distinct for t in set(v.split()))
    key_word = {v: min(v.split(), key=lambda t: (df[t], t)) for v in distinct}
    out = sim.copy()
    for n in one:
        if a[n] is not None:
            hit = key_word[a[n]] in right.all_words[ri[n]]
        else:
            hit = key_word[b[n]] in left.all_words[li[n]]
        if hit:
            out[n] = 1.0
    return out


def field_codes(value: str | None) -> frozenset[str]:
    """The codes of a `code` field: those in its text (`codes`), and the value itself when it is
    one token holding a digit (a model number column holds `121066` or `3skb-x2318`)."""
    if value is None:
        return frozenset()
    found = codes(value)
    token = _SEPARATORS.sub("", normalize(value).strip())
    one_token = token and not any(c.isspace() for c in token)
    if one_token and len(token) >= MIN_CODE_LENGTH and _ANY_DIGIT.search(token):
        found |= {token}
    return found


class Prepared:
    """One side's compared fields, normalised once per record rather than once per pair."""

    def __init__(self, frame: pd.DataFrame, comparators: dict[str, str],
                 code_fields: list[str] | None = None):
        self.values: dict[str, np.ndarray] = {}
        self.numbers: dict[str, np.ndarray] = {}
        textual = [f for f, kind in comparators.items() if kind in ("text", "name")]
        columns = [_strings(frame[f]) for f in textual]
        self.all_words = _objects([frozenset(w for v in row if v for w in words(v))
                                   for row in zip(*columns, strict=True)] if columns
                                  else [frozenset()] * len(frame))
        if code_fields is None:
            code_fields = [f for f, kind in comparators.items() if kind in ("text", "name", "code")]
        coded = [_strings(frame[f]) for f in code_fields]
        self.all_codes = _objects([frozenset().union(*(field_codes(v) for v in row if v))
                                   for row in zip(*coded, strict=True)] if coded
                                  else [frozenset()] * len(frame))
        for field, kind in comparators.items():
            raw = frame[field]
            if kind in ("number", "year"):
                self.values[field] = pd.to_numeric(raw.astype(object), errors="coerce").to_numpy(np.float64)
            elif kind == "text":
                texts = [_text_form(v) for v in _strings(raw)]
                self.values[field] = _objects(texts)
                self.numbers[field] = _objects([_numbers(t) for t in texts])
            elif kind == "name":
                self.values[field] = _objects([_surnames(v) for v in _strings(raw)])
            elif kind == "code":  # the record's codes: a model number column, or in its text
                self.values[field] = self.all_codes
            else:
                self.values[field] = _objects([None if v is None else "".join(words(v)) or None
                                               for v in _strings(raw)])


def field_similarity(kind: str, left: Prepared, right: Prepared, field: str,
                     li: np.ndarray, ri: np.ndarray) -> np.ndarray:
    """Similarity in [0, 1] of `field` for each pair (li[n], ri[n]); NaN means no evidence."""
    a, b = left.values[field][li], right.values[field][ri]
    if kind == "year":
        return np.where(np.isnan(a) | np.isnan(b), np.nan, (a == b).astype(np.float64))
    if kind == "number":
        big = np.maximum(np.abs(a), np.abs(b))
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = np.clip(1.0 - np.abs(a - b) / big, 0.0, 1.0)
        return np.where(np.isnan(a) | np.isnan(b) | (a == 0) | (b == 0), np.nan, sim)
    if kind == "name":
        return _ratio_mean(a, b)
    if kind == "text":
        sim = _set_ratio(a, b)
        sim = (sim + _idf_cosine(left.values[field], right.values[field], li, ri)) / 2
        clash = _disjoint(left.numbers[field][li], right.numbers[field][ri])
        return _key_word_evidence(field, left, right, li, ri, np.where(clash, sim * NUMBER_CLASH, sim))
    if kind == "code":
        out = np.full(len(li), np.nan)
        has = np.flatnonzero(np.fromiter((bool(x) for x in a), bool, len(a))
                             & np.fromiter((bool(y) for y in b), bool, len(b)))
        out[has] = [0.0 if x.isdisjoint(y) else 1.0 for x, y in zip(a[has], b[has], strict=True)]
        return out
    known = (a != None) & (b != None)  # noqa: E711
    return np.where(known, (a == b).astype(np.float64), np.nan)


def _is_zero(vectors: np.ndarray) -> np.ndarray:
    return np.abs(vectors).sum(axis=1) == 0


def _row_dots(left: np.ndarray, right: np.ndarray, li: np.ndarray, ri: np.ndarray,
              chunk: int = 65536) -> np.ndarray:
    """left[li[n]] . right[ri[n]] for every n, gathered `chunk` pairs at a time (never a full
    pairs x dims copy)."""
    out = np.empty(len(li), dtype=np.float64)
    for start in range(0, len(li), chunk):
        a, b = left[li[start:start + chunk]], right[ri[start:start + chunk]]
        out[start:start + chunk] = np.einsum("ij,ij->i", a, b)
    return out


def number_clash(left: Prepared, right: Prepared, comparators: dict[str, str],
                 li: np.ndarray, ri: np.ndarray) -> np.ndarray:
    """Per pair: some `text` field carries numbers on both sides and they share none, or the two
    records carry model codes (in any text or code field) and share none: `c4893a` and
    `c4890a` are two products however alike their titles read."""
    out = _disjoint(left.all_codes[li], right.all_codes[ri])
    for field, kind in comparators.items():
        if kind == "text":
            out |= _disjoint(left.numbers[field][li], right.numbers[field][ri])
    return out


def score_pairs(
    left: Prepared,
    right: Prepared,
    comparators: dict[str, str],
    left_vecs: np.ndarray,
    right_vecs: np.ndarray,
    pairs: np.ndarray,
    extra: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Score of each [left, right] pair in [0, 1] and the per-field similarities behind it
    (key `cos` holds the cosine; `cos_<field>` the cosine of a free-text field embedded on its
    own, given in `extra` as (left vectors, right vectors))."""
    li, ri = pairs[:, 0], pairs[:, 1]
    sims: dict[str, np.ndarray] = {}
    total = np.zeros(len(pairs))
    weight = np.zeros(len(pairs))
    for field, kind in comparators.items():
        sim = field_similarity(kind, left, right, field, li, ri)
        sims[field] = sim
        has = ~np.isnan(sim)
        total[has] += WEIGHTS[kind] * sim[has]
        weight[has] += WEIGHTS[kind]
    cos = _row_dots(left_vecs, right_vecs, li, ri)
    zero = _is_zero(left_vecs)[li] | _is_zero(right_vecs)[ri]
    cos = np.where(zero, np.nan, np.clip(cos, 0.0, 1.0))
    sims["cos"] = cos
    for field, (a, b) in (extra or {}).items():  # free-text fields embedded on their own
        sims[f"cos_{field}"] = np.where(_is_zero(a)[li] | _is_zero(b)[ri], np.nan,
                                        np.clip(_row_dots(a, b, li, ri), 0.0, 1.0))
    for name, sim in sims.items():
        if name.startswith("cos"):
            has = ~np.isnan(sim)
            total[has] += COSINE_WEIGHT * sim[has]
            weight[has] += COSINE_WEIGHT
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(weight > 0, total / weight, 0.0)
    return score, sims


def weighted_mean(sims: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Per pair, the mean of the similarities that have evidence, each field weighted by
    `weights` (fields missing from it count 0); 0 where no weighted field has evidence."""
    n = len(next(iter(sims.values()))) if sims else 0
    total, weight = np.zeros(n), np.zeros(n)
    for name, w in weights.items():
        if name not in sims or w <= 0:
            continue
        sim = sims[name]
        has = ~np.isnan(sim)
        total[has] += w * sim[has]
        weight[has] += w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / weight, 0.0)


def free_text(records: pd.DataFrame, fields: list[str]) -> list[str]:
    """Of `fields`, those whose values run past FREE_TEXT_WORDS words (median over every record):
    descriptions, notes, reviews. Each is embedded on its own (its own cosine, weighted by what
    it says) rather than into the record's text, stays out of the rare-token blocker, and no
    model codes are read from it: a title carries its product's code, a description names
    accessories, versions and other products."""
    out = []
    for field in fields:
        values = records[field].dropna().astype(str) if field in records else pd.Series(dtype=str)
        if len(values) and float(values.str.split().str.len().median()) > FREE_TEXT_WORDS:
            out.append(field)
    return out


def code_fields(comparators: dict[str, str], free: list[str]) -> list[str]:
    """The fields a record's model codes are read from: its `code` fields, and its `text` and
    `name` fields that are not free text."""
    return [f for f, kind in comparators.items()
            if kind == "code" or (kind in ("text", "name") and f not in free)]
