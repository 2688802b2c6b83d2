"""Document search over a chunked pipeline: parent documents ranked by their best chunk.

Chunk hits are fetched best first and grouped by document; a document's score is its best
chunk's similarity, and it is shown with that chunk's text and character offsets. Since several
of the nearest chunks may belong to one document, the chunk search over-fetches (k x 4 chunks,
then 4 times more) until it has k distinct documents or the table has no more chunks.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from jammi.errors import SearchError
from jammi.query import MAX_K
from jammi.spec.chunking import CHUNK_DOC

FETCH_FACTOR = 4
DOCUMENT_COLUMNS = ["doc_id", "similarity", "chunk_id", "ordinal", "start", "end", "text"]


def best_chunk_per_document(hits: pd.DataFrame, k: int) -> pd.DataFrame:
    """The first (best) chunk of each document in `hits` (sorted by similarity, best first),
    for the k best documents."""
    ordered = hits.sort_values("similarity", ascending=False, kind="stable")
    best = ordered.drop_duplicates(subset=[CHUNK_DOC], keep="first").head(k)
    return best[[c for c in DOCUMENT_COLUMNS if c in best.columns]].reset_index(drop=True)


def rank_documents(chunk_search: Callable[[int], pd.DataFrame], k: int, name: str) -> pd.DataFrame:
    """The k documents whose best chunk is nearest, from `chunk_search(n)` (the n nearest
    chunks of pipeline `name`, with the chunks frame's columns and `similarity`)."""
    if not 1 <= k <= MAX_K:
        raise SearchError(f"k must be between 1 and {MAX_K} (got {k})")
    fetch = min(MAX_K, k * FETCH_FACTOR)
    while True:
        hits = chunk_search(fetch)
        if CHUNK_DOC not in hits.columns:
            raise SearchError(f"{name!r} is not a chunked pipeline: --documents needs a pipeline that "
                              "declares `chunking:` (its table carries each chunk's _doc_id)")
        exhausted = len(hits) < fetch or fetch >= MAX_K
        if exhausted or hits[CHUNK_DOC].nunique() >= k:
            return best_chunk_per_document(hits, k)
        fetch = min(MAX_K, fetch * FETCH_FACTOR)
