"""What people said about record pairs: answers from `jammi fusion review` or a CSV, and what
the matcher makes of them.

A label names a pair of records of one entity (source and record id on each side, the two
sources in sorted order, as fusion compares them) and says whether they describe the same
thing. Labels live in the catalog (`jammi.fusion_labels`, with who answered and when); the next
fusion run links every `yes` pair, never links a `no` pair, and, under `scoring: learned`,
refits the weights and the threshold to them (weights.py).

The review queue (`review_queue`) holds the pairs worth asking about: the pairs that are some
record's best candidate (the only ones whose answer can change a link), none already answered,
the ones the matcher is least sure of first: the smallest decision margin (how far the score
would have to move to change what the matcher does with the pair, against the threshold or
against a rival candidate: matching.decision_margin), one pair per record before any record's
second. The pairs in a close contest are where the matcher errs most (on Amazon-Google, 44% of
the pairs over the threshold within 0.02 of a rival are decided wrong, 20% of those within 0.02
of the threshold), and one answer there often settles two links: a yes gives both records
their partner and takes the rival's link away, a no hands the link to the rival.

How the matcher does on the labelled pairs (the `labelled_pairs` check): each pair's decision
by its score alone (what it would have done without that label) against the answer. Under
`scoring: learned` the scores are held out: each fifth of the labels is scored by a model
fitted to the other four fifths (weights.held_out), so the figure is not flattered by the
labels it was fitted on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from jammi.errors import FusionError
from jammi.spec.entities import EntitySpec

PAIR_KEY = ["left_source", "left_id", "right_source", "right_id"]
YES = frozenset({"y", "yes", "1", "true", "match", "same"})
NO = frozenset({"n", "no", "0", "false", "non-match", "nonmatch", "different"})
MAX_SHOWN = 5


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
    """The unanswered contender pairs (some record's best candidate) in the order to ask them,
    least sure first (`least_sure_order`)."""
    if pairs.empty:
        return pairs
    queue = pairs[pairs["contender"]]
    if len(labels):
        done = labels.set_index(PAIR_KEY).index
        queue = queue[~queue.set_index(PAIR_KEY).index.isin(done)]
    queue = queue.reset_index(drop=True)
    out = queue.iloc[least_sure_order(queue)] if len(queue) else queue
    return (out.head(limit) if limit is not None else out).reset_index(drop=True)


def least_sure_order(queue: pd.DataFrame) -> list[int]:
    """Row positions of `queue`, the pairs the matcher is least sure of first: by their decision
    margin (matching.decision_margin: how far the score would have to move to change what the
    matcher does with the pair; the distance from the threshold where a run did not record it),
    ties by pair key. One pair per record comes first: a pair that names a record an earlier pair
    already names waits until the others have been asked, since the answer about the one often
    settles the other (a yes gives the record its partner, a no hands the link to the
    rival)."""
    margin = queue["margin"] if "margin" in queue.columns else pd.Series(np.nan, index=queue.index)
    margin = margin.fillna((queue["score"] - queue["threshold"]).abs())
    ranked = queue.assign(_margin=margin).sort_values(["_margin", *PAIR_KEY], kind="stable")
    first: list[int] = []
    later: list[int] = []
    seen: set[tuple[str, str]] = set()
    for n, ls, lid, rs, rid in zip(ranked.index, ranked["left_source"], ranked["left_id"],
                                   ranked["right_source"], ranked["right_id"], strict=True):
        records = {(str(ls), str(lid)), (str(rs), str(rid))}
        if records & seen:
            later.append(int(n))
        else:
            first.append(int(n))
            seen |= records
    return first + later
