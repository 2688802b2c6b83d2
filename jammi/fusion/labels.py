"""What people said about record pairs: answers from `jammi fusion review` or a CSV, and what
the matcher makes of them.

A label names a pair of records of one entity (source and record id on each side, the two
sources in sorted order, as fusion compares them) and says whether they describe the same
thing. Labels live in the catalog (`jammi.fusion_labels`, with who answered and when); the next
fusion run links every `yes` pair, never links a `no` pair, and, under `scoring: learned`,
refits the weights and the threshold to them (weights.py).

The review queue (`review_queue`) holds the pairs worth asking about: the pairs that are some
record's best candidate (the only ones whose answer can change a link), none already answered.
Three in four are the ones the matcher is least sure of, whose score is nearest the threshold;
every fourth is drawn from a band of the scores, the bands taken in turn from the highest (a
fixed pseudo-random pick within the band). Answers near the cut fix the pairs that are most
likely wrong; answers away from it say how often a pair that scores 0.9 or 0.4 is a match,
which is what a refit of the threshold needs and what the least sure pairs alone never show.

How the matcher does on the labelled pairs (the `labelled_pairs` check): each pair's decision
by its score alone (what it would have done without that label) against the answer. Under
`scoring: learned` the scores are held out: each fifth of the labels is scored by a model
fitted to the other four fifths (weights.held_out), so the figure is not flattered by the
labels it was fitted on.
"""

from __future__ import annotations

import itertools
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from jammi.errors import FusionError
from jammi.spec.entities import EntitySpec

PAIR_KEY = ["left_source", "left_id", "right_source", "right_id"]
YES = frozenset({"y", "yes", "1", "true", "match", "same"})
NO = frozenset({"n", "no", "0", "false", "non-match", "nonmatch", "different"})
MAX_SHOWN = 5
EXPLORE_EVERY = 4  # every 4th pair asked is drawn from a score band, the others are the least sure
SCORE_BANDS = 5


def oriented(left_source: str, left_id: str, right_source: str, right_id: str) -> tuple[str, str, str, str]:
    """The pair with its sources in sorted order (fusion's orientation)."""
    if left_source <= right_source:
        return left_source, str(left_id), right_source, str(right_id)
    return right_source, str(right_id), left_source, str(left_id)


def answer_of(value: object) -> bool | None:
    """True for a yes, False for a no, None when `value` is neither."""
    text = str(value).strip().casefold() if value is not None and not pd.isna(value) else ""
    return True if text in YES else False if text in NO else None


def read_labels_csv(path: Path, entity: str, spec: EntitySpec) -> list[tuple[str, str, str, str, bool]]:
    """Labelled pairs from a CSV file: columns `left_source, left_id, right_source, right_id` or
    two columns named after two of the entity's sources (`dblp,acm`, as gold mapping files
    are), and an optional `label` (yes/no, y/n, 1/0, true/false, match/non-match; without it
    every row is a match). Refuses the file, naming rows, when any row is unreadable."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise FusionError(f"labels file {str(path)!r} cannot be read as CSV: {err}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    named = [c for c in frame.columns if c in spec.sources]
    if set(PAIR_KEY) <= set(frame.columns):
        sides = frame[PAIR_KEY].astype(str).apply(lambda s: s.str.strip())
    elif len(named) == 2:
        a, b = named
        sides = pd.DataFrame({"left_source": a, "left_id": frame[a].str.strip(),
                              "right_source": b, "right_id": frame[b].str.strip()})
    else:
        raise FusionError(
            f"labels file {str(path)!r}: give columns {', '.join(PAIR_KEY)} (and `label`), or two "
            f"columns named after sources of entity {entity!r} ({', '.join(spec.sources)}); "
            f"found {', '.join(frame.columns) or 'none'}")
    problems: list[str] = []
    out = []
    labels = frame["label"] if "label" in frame.columns else pd.Series("yes", index=frame.index)
    for n, (row, raw) in enumerate(zip(sides.itertuples(index=False), labels, strict=True), start=2):
        ls, lid, rs, rid = row
        answer = answer_of(raw)
        if ls not in spec.sources or rs not in spec.sources or ls == rs:
            problems.append(f"row {n}: sources {ls!r} and {rs!r} are not two sources of {entity!r}")
        elif not lid or not rid:
            problems.append(f"row {n}: an empty record id")
        elif answer is None:
            problems.append(f"row {n}: label {raw!r} is neither yes nor no")
        else:
            out.append((*oriented(ls, lid, rs, rid), answer))
    if problems:
        more = f" and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
        raise FusionError(f"labels file {str(path)!r}: " + "; ".join(problems[:MAX_SHOWN]) + more)
    return out


def labels_frame(rows: list[dict]) -> pd.DataFrame:
    """Stored labels as a frame: PAIR_KEY and `is_match` (the latest answer per pair)."""
    if not rows:
        return pd.DataFrame({**{c: pd.Series(dtype=object) for c in PAIR_KEY},
                             "is_match": pd.Series(dtype=bool)})
    frame = pd.DataFrame(rows)
    frame = frame.drop_duplicates(PAIR_KEY, keep="last")
    return frame[[*PAIR_KEY, "is_match"]].astype({"is_match": bool}).reset_index(drop=True)


def positions(labels: pd.DataFrame, left_source: str, right_source: str, left_ids: pd.Series,
              right_ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """([left, right] row positions, answers 1/0) of the labels between two sources whose
    records are both present (a label about a record since deleted is left out)."""
    mine = labels[(labels["left_source"] == left_source) & (labels["right_source"] == right_source)]
    if mine.empty:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    lpos = pd.Series(np.arange(len(left_ids)), index=left_ids.astype(str).to_numpy())
    rpos = pd.Series(np.arange(len(right_ids)), index=right_ids.astype(str).to_numpy())
    lp = lpos.reindex(mine["left_id"].astype(str).to_numpy()).to_numpy()
    rp = rpos.reindex(mine["right_id"].astype(str).to_numpy()).to_numpy()
    ok = ~(np.isnan(lp) | np.isnan(rp))
    pairs = np.stack([lp[ok], rp[ok]], axis=1).astype(np.int64)
    return pairs, mine["is_match"].to_numpy(dtype=np.float64)[ok]


def review_queue(pairs: pd.DataFrame, labels: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """The unanswered contender pairs (some record's best candidate) in the order to ask them:
    mostly least sure first (by distance of the score from the threshold, ties by pair key),
    and every EXPLORE_EVERY-th a pair drawn from a score band (`band_order`), so the answers
    also say how the matcher does away from its cut."""
    if pairs.empty:
        return pairs
    contenders = pairs[pairs["contender"]]
    queue = contenders
    if len(labels):
        done = labels.set_index(PAIR_KEY).index
        queue = queue[~queue.set_index(PAIR_KEY).index.isin(done)]
    if queue.empty:
        return queue.reset_index(drop=True)
    queue = queue.reset_index(drop=True)
    margin = (queue["score"] - queue["threshold"]).abs()
    unsure = queue.assign(_margin=margin).sort_values(["_margin", *PAIR_KEY], kind="stable").index.tolist()
    banded = band_order(queue, contenders["score"].to_numpy(dtype=np.float64))
    order: list[int] = []
    taken: set[int] = set()
    streams = (iter(unsure), iter(banded))  # each holds every row: neither runs dry before the end
    while len(order) < len(queue):
        explore = (len(order) + 1) % EXPLORE_EVERY == 0
        n = next(n for n in streams[explore] if n not in taken)
        order.append(n)
        taken.add(n)
    out = queue.iloc[order]
    return (out.head(limit) if limit is not None else out).reset_index(drop=True)


def band_order(queue: pd.DataFrame, scores: np.ndarray) -> list[int]:
    """Row positions of `queue` taking one pair from each of SCORE_BANDS score bands in turn,
    highest band first. The bands are equal shares of every contender's score (`scores`, the
    answered ones included, so they stay put as answers come in); within a band the pairs come in
    a fixed pseudo-random order (a hash of the pair key), so what is asked there is a fair sample
    of the band and the same pair on every run."""
    edges = np.quantile(scores, np.linspace(0, 1, SCORE_BANDS + 1)[1:-1]) if len(scores) else np.zeros(0)
    band = np.searchsorted(edges, queue["score"].to_numpy(dtype=np.float64), side="right")
    keys = queue[PAIR_KEY].astype(str).agg("\x1f".join, axis=1)
    draw = np.array([zlib.crc32(k.encode("utf-8")) for k in keys], dtype=np.int64)
    per_band = [sorted(np.flatnonzero(band == b).tolist(), key=lambda n: draw[n])
                for b in range(SCORE_BANDS - 1, -1, -1)]
    out: list[int] = []
    for row in itertools.zip_longest(*per_band):
        out.extend(n for n in row if n is not None)
    return out
