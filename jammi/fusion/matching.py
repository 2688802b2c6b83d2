"""Record linkage between two sources of one entity: block, score, threshold, assign.

`match()` takes two standardized record frames (row positions are the record handles), their
embedding matrices (rows aligned, L2-normalised) and the EntitySpec, and returns:

* `candidates`: the pairs blocking proposed (embedding neighbours and rare shared tokens, see
  blocking.py), each record bringing at most `matching.candidates` of its own;
* `scored`: every candidate pair with its score and per-field similarities (scoring.py);
* `links`: the accepted one-to-one pairs with score, rule and evidence;
* `threshold`: `matching.threshold` when set, else the automatic rule below.

Automatic threshold (no labels, nothing tuned per dataset): take each record's best candidate
score, from both sides. Records that have a partner in the other source put their best score in
a high mode; records that have none put a near-miss there, in a lower mode. Otsu's method
splits the two (threshold.py; `matching.auto_threshold: mixture` fits a two-Gaussian mixture
instead, which bench/fusion_quality.py measures as worse: the partnered mode is skewed, not
Gaussian, and the fit splits it).

Mutual best pairs (`matching.mutual_best`, on by default; off under a configured
`matching.threshold`, which is a hard cut). A pair that is the best candidate of both its
records is a match unless the scores contradict it: it is linked when it scores above the
*near misses*, the best scores of the records under the threshold (what a record with no
partner scores: their mean + 2 standard deviations), and above `MIN_THRESHOLD` (0.5, the floor
of every automatic threshold: two leftover records that are each other's best at 0.25 are not
a match). Other pairs need the threshold. This guards against a cut that lands too high: a
partnered record that scores low against its partner, yet better than against anything else on
either side and clearly above what lone records score, still links. On the four benchmark sets
Otsu's cut is already close to right and the rule changes little (bench/fusion_quality.py); a
lower bar (the near misses' mean, tried offline) added F1 on some sets and cost 0.03 on Fodors-Zagat, whose
lone restaurants are often each other's best.

Assignment is one-to-one and greedy by score: eligible pairs are taken in descending score
order (ties: lower left, then lower right position) and a pair is accepted when neither record
is already linked. Every accepted pair is therefore its own best remaining option.

Duplicates within a source (`matching.duplicates: true`; off by default since issue 14: on
Walmart-Amazon, whose Amazon side lists many colour and pack variants, twin links cost 0.09 F1,
while on Amazon-Google they add 0.015). One source often holds the same thing twice (a Windows
and a Mac listing, a re-keyed catalogue row). One-to-one assignment links only one of the twins; the
other is left with its best candidate already taken. Such a record `x` still joins when:
its best candidate `o` (in the other source) scores at or above the threshold, `o` is linked
to `p` from `x`'s own source, and `x` and `p` are twins: compared with the same scorer, they
score at least `duplicate threshold = (1 + threshold) / 2`, i.e. they must be closer to each
other than an accepted cross-source pair needs to be, by half the remaining distance to 1; and
no `text` field of theirs may carry clashing numbers ("office 2003" and "office 2007" are two
editions, not a duplicate), nor may they carry model codes and share none (`c4893a`, `c4890a`).
The link's rule says `match:duplicate of <p>` with both scores; clustering lets it add that
one more record of `x`'s source to `o`'s entity (clusters.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from jammi.fusion.blocking import VectorIndex
from jammi.fusion.blocking import candidates as block
from jammi.fusion.clusters import DUPLICATE_RULE_PREFIX as DUPLICATE_RULE
from jammi.fusion.scoring import (
    COSINE_WEIGHT,
    WEIGHTS,
    Prepared,
    code_fields,
    number_clash,
    score_pairs,
    weighted_mean,
)
from jammi.fusion.threshold import MAX_THRESHOLD, MIN_THRESHOLD, mixture_threshold, otsu_threshold
from jammi.fusion.weights import (
    CONTEXT_SD,
    HELD_OUT_FOLDS,
    SLOPE,
    MatchModel,
    MeanFit,
    calibrate,
    fit_em,
    fit_mean,
    mean_weights,
    pair_levels,
)
from jammi.spec.entities import EntitySpec

TEXT_KINDS = ("text", "name", "code")
LEARNED = ("learned", "fellegi_sunter")
NEAR_MISS_SDS = 2.0
CONTEXT = ("mutual_best", "margin")  # context_features' columns
MAX_GAP = 0.2


@dataclass(frozen=True)
class Matches:
    candidates: pd.DataFrame  # left, right (row positions)
    scored: pd.DataFrame  # left, right, score, then one similarity column per field and `cos`
    links: pd.DataFrame  # left, right, score, rule, evidence
    threshold: float
    threshold_rule: str
    model: MatchModel | None = None  # the fitted Fellegi-Sunter model under `scoring: learned`


def best_scores(left: np.ndarray, right: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Each record's best candidate score, left records then right records (records without
    candidates are left out)."""
    if not len(score):
        return np.zeros(0)
    frame = pd.DataFrame({"l": left, "r": right, "s": score})
    return np.concatenate([frame.groupby("l")["s"].max().to_numpy(),
                           frame.groupby("r")["s"].max().to_numpy()])


def near_miss(best: np.ndarray, threshold: float) -> float:
    """The top of the near misses: mean + `NEAR_MISS_SDS` standard deviations of the best
    candidate scores under `threshold` (those of records that have no partner). A mutual best
    pair at or under it scores like a lone record's best guess: the scores contradict it."""
    below = best[best < threshold]
    return float(below.mean() + NEAR_MISS_SDS * below.std()) if len(below) else threshold


def mutual_best(left: np.ndarray, right: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per pair: it is the best candidate of both its records (ties count for both)."""
    if not len(score):
        return np.zeros(0, dtype=bool)
    frame = pd.DataFrame({"l": left, "r": right, "s": score})
    return ((score >= frame.groupby("l")["s"].transform("max").to_numpy())
            & (score >= frame.groupby("r")["s"].transform("max").to_numpy()))


def eligible(left: np.ndarray, right: np.ndarray, score: np.ndarray, threshold: float,
             mutual_bar: float) -> np.ndarray:
    """Per pair: at or above `threshold`, or a mutual best pair above `mutual_bar`."""
    return (score >= threshold) | (mutual_best(left, right, score) & (score > mutual_bar))


def assign(left: np.ndarray, right: np.ndarray, score: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the pairs kept by greedy one-to-one assignment above `threshold`."""
    keep = np.flatnonzero(score >= threshold)
    order = keep[np.lexsort((right[keep], left[keep], -score[keep]))]
    used_left: set[int] = set()
    used_right: set[int] = set()
    chosen = []
    for n in order:
        a, b = int(left[n]), int(right[n])
        if a in used_left or b in used_right:
            continue
        used_left.add(a)
        used_right.add(b)
        chosen.append(n)
    return np.asarray(chosen, dtype=np.int64)


def duplicate_threshold(threshold: float) -> float:
    """How alike two records of one source must be to count as twins (module docstring)."""
    return round((1.0 + threshold) / 2.0, 4)


def twin_candidates(
    left: np.ndarray, right: np.ndarray, score: np.ndarray, chosen: np.ndarray, threshold: float
) -> list[tuple[int, int, str]]:
    """(candidate pair index, twin position, side of the unlinked record) for every record left
    unlinked whose best candidate is at or above `threshold` and already linked to a record of
    its own side (the twin to compare with)."""
    out: list[tuple[int, int, str]] = []
    ends = {"l": np.asarray(left, dtype=np.int64), "r": np.asarray(right, dtype=np.int64)}
    for side, other in (("l", "r"), ("r", "l")):
        mine, theirs = ends[side], ends[other]
        if not len(mine):
            continue
        size = int(max(mine.max(), theirs.max())) + 1
        linked = np.zeros(size, dtype=bool)
        linked[mine[chosen]] = True
        partner = np.full(size, -1, dtype=np.int64)
        partner[theirs[chosen]] = mine[chosen]
        best = np.full(size, -np.inf)
        np.maximum.at(best, mine, score)
        ok = (score >= threshold) & (score >= best[mine]) & ~linked[mine] & (partner[theirs] >= 0)
        out.extend((int(n), int(partner[theirs[n]]), side) for n in np.flatnonzero(ok))
    # one pair per unlinked record: its best (ties broken by position)
    seen: set[tuple[str, int]] = set()
    unique = []
    for n, twin, side in sorted(out, key=lambda t: (-score[t[0]], t[0])):
        x = int(left[n] if side == "l" else right[n])
        if (side, x) not in seen:
            seen.add((side, x))
            unique.append((n, twin, side))
    return unique


def duplicate_links(
    left: pd.DataFrame,
    right: pd.DataFrame,
    prepared: tuple[Prepared, Prepared],
    vectors: tuple[np.ndarray, np.ndarray],
    comparators: dict[str, str],
    li: np.ndarray,
    ri: np.ndarray,
    score: np.ndarray,
    chosen: np.ndarray,
    threshold: float,
) -> tuple[np.ndarray, list[str]]:
    """Candidate pair indices that join as duplicates of a linked twin, and their rules."""
    found = twin_candidates(li, ri, score, chosen, threshold)
    if not found:
        return np.zeros(0, dtype=np.int64), []
    bar = duplicate_threshold(threshold)
    keep: list[int] = []
    rules: list[str] = []
    for side, frame, prep, vecs, pos in (("l", left, prepared[0], vectors[0], li),
                                         ("r", right, prepared[1], vectors[1], ri)):
        mine = [(n, twin) for n, twin, s in found if s == side]
        if not mine:
            continue
        pairs = np.array([[twin, int(pos[n])] for n, twin in mine], dtype=np.int64)
        twin_score, _ = score_pairs(prep, prep, comparators, vecs, vecs, pairs)
        clash = number_clash(prep, prep, comparators, pairs[:, 0], pairs[:, 1])
        ids = frame["_record_id"].astype(str).to_numpy()
        for (n, twin), ts, differ in zip(mine, twin_score, clash, strict=True):
            if ts >= bar and not differ:
                keep.append(n)
                rules.append(f"{DUPLICATE_RULE} of {ids[twin]} (twin {ts:.2f} >= {bar:.2f}, "
                             f"score {score[n]:.2f} >= {threshold:.2f})")
    return np.asarray(keep, dtype=np.int64), rules


def _texts(frame: pd.DataFrame, fields: list[str]) -> list[str]:
    if not fields:
        return [""] * len(frame)
    parts = [frame[f].astype("string").fillna("") for f in fields]
    return parts[0].str.cat(parts[1:], sep=" ").tolist() if len(parts) > 1 else parts[0].tolist()


def _evidence(sims: dict[str, np.ndarray], n: int) -> str:
    shown = [f"{name} {vals[n]:.2f}" for name, vals in sims.items() if not np.isnan(vals[n])]
    return ", ".join(shown)


def _with_labelled(pairs: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """Candidate pairs plus the labelled pairs blocking missed (an answered pair is always scored)."""
    if not len(labelled):
        return pairs
    both = np.concatenate([pairs, labelled.astype(np.int64)])
    width = int(both[:, 1].max()) + 1
    codes = np.unique(both[:, 0] * width + both[:, 1])
    return np.stack([codes // width, codes % width], axis=1)


def _label_positions(pairs: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """Index in `pairs` of each labelled [left, right] pair (all present: see _with_labelled)."""
    width = int(max(pairs[:, 1].max(), labelled[:, 1].max())) + 1
    codes = pairs[:, 0] * width + pairs[:, 1]
    return np.searchsorted(codes, labelled[:, 0] * width + labelled[:, 1])


@dataclass
class Learned:
    """A learned scorer's scores for every pair, and its threshold (None: the automatic cut)."""

    score: np.ndarray
    threshold: float | None
    how: str
    model: MatchModel


def learn(scoring: str, comparators: dict[str, str], sims: dict[str, np.ndarray], li: np.ndarray,
          ri: np.ndarray, records: int, at: np.ndarray, answers: np.ndarray,
          free: tuple[str, ...] = ()) -> Learned:
    """Fit a learned scorer over the candidate pairs (labelled pairs at positions `at`).

    `learned`: EM (one partner per record, labels held at their answers) says how much each
    field tells matches apart (weights.MatchModel.importance: a declared field keeps its hand
    weight from one bit of separation on, a free-text field its bits over the best field's);
    the score is the weighted mean of the similarities, each field's hand weight times its
    importance, cut by Otsu's threshold. With labels, the weights and the threshold are refitted
    to them (`refit`) from the first answer on, priors centred on the label-free fit, so a few
    answers nudge them and many move them; the rule stays the label-free one (the threshold,
    mutual best pairs above the near misses, one-to-one), on the refitted mean.
    `fellegi_sunter`: the model's match probability, cut at 0.5 (calibrated to the labels)."""
    levels = pair_levels(comparators, sims)
    pinned = (at, answers) if len(at) else None
    model = fit_em(comparators, levels, records, pinned, (li, ri))
    if scoring == "fellegi_sunter":
        if len(at):
            model = calibrate(model, levels, at, answers)
        how = "match probability 0.5" + (f" (calibrated on {model.labels} labels)" if model.labels else "")
        return Learned(model.probability(levels), 0.5, how, model)
    base = {**{f: WEIGHTS[k] for f, k in comparators.items()},
            **{name: COSINE_WEIGHT for name in sims if name.startswith("cos")}}
    weights = mean_weights(model, base, free)
    score = weighted_mean(sims, weights)
    if not len(at):
        return Learned(score, None, "", model)
    model.labels = int(len(at))
    fit = refit(sims, weights, li, ri, score, at, answers)
    model.mean_weights = fit.weights
    threshold = min(max(fit.threshold, MIN_THRESHOLD), MAX_THRESHOLD)
    return Learned(weighted_mean(sims, fit.weights), threshold,
                   f"weights and threshold fitted to {fit.labels} labels: {threshold:.2f}", model)


def refit(sims: dict[str, np.ndarray], weights: dict[str, float], li: np.ndarray, ri: np.ndarray,
          score: np.ndarray, at: np.ndarray, answers: np.ndarray) -> MeanFit:
    """The weighted mean's weights and threshold refitted to the labelled pairs: the answers'
    likelihood under P(same) = σ(slope · (weighted mean - threshold) + context · γ)
    (weights.fit_mean), the priors centred on the label-free scorer: its weights, Otsu's cut,
    and for the context (`context_features`) the mutual-best rule, which links a mutual best
    pair from the near misses on (a coefficient of SLOPE × (threshold - that bar)), and no say
    for the margin. The context is fitted so that what the pair's rivals explain (a pair that
    wins both its records, or loses one by a little) is not put down to the weights or the
    threshold; the matcher then applies the fitted weights and threshold with its own rule,
    which handles the rivals itself (mutual best pairs, one-to-one assignment)."""
    best = best_scores(li, ri, score)
    start, _ = otsu_threshold(best)
    bar = min(start, max(near_miss(best, start), MIN_THRESHOLD))
    context = context_features(li, ri, score)
    centre = np.array([SLOPE * (start - bar), 0.0])
    return fit_mean(sims, weights, start, at, answers, context[at], CONTEXT_SD, centre)


def runner_up_gap(li: np.ndarray, ri: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per pair, its score minus the best score of any other candidate of either of its records
    (a record with no other candidate counts 0 there)."""
    other = np.zeros(len(score))
    for key in (np.asarray(li, dtype=np.int64), np.asarray(ri, dtype=np.int64)):
        order = np.lexsort((np.arange(len(score)), -score, key))  # per record, best first
        k = key[order]
        head = np.r_[True, k[1:] != k[:-1]]
        size = int(key.max()) + 1 if len(key) else 0
        best, second = np.zeros(size), np.zeros(size)
        best[k[head]] = score[order][head]
        after = np.r_[False, head[:-1]] & ~head  # the second pair of a record
        second[k[after]] = score[order][after]
        is_top = np.zeros(len(score), dtype=bool)
        is_top[order[head]] = True
        other = np.maximum(other, np.where(is_top, second[key], best[key]))
    return score - other


def context_features(li: np.ndarray, ri: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per pair, what its records' other candidates say about it (CONTEXT): whether it is the
    best of both its records, and its margin over the runner-up (runner_up_gap, clipped to
    ±MAX_GAP and times SLOPE, so in logits as the score is)."""
    return np.column_stack([mutual_best(li, ri, score).astype(np.float64),
                            np.clip(runner_up_gap(li, ri, score), -MAX_GAP, MAX_GAP) * SLOPE])


def decision_margin(li: np.ndarray, ri: np.ndarray, score: np.ndarray, threshold: float, mutual_bar: float,
                    linked: np.ndarray) -> np.ndarray:
    """Per pair, how far its score would have to move for the matcher to decide it the other way:
    the smaller of what decides a link, its bar (the threshold, or `mutual_bar` for a mutual best
    pair) and its contest with its records' other candidates (runner_up_gap). A linked pair stays
    linked while it clears its bar and beats its rivals; an unlinked pair that clears its bar lost
    a contest by its gap; one under its bar must rise to it, and past any rival that beats it.
    The review asks the smallest margins first (labels.review_queue): on Amazon-Google, label-free,
    51% of the 100 contender pairs with the smallest margins are decided wrong, 18% of the 100
    nearest the threshold."""
    gap = runner_up_gap(li, ri, score)
    bar = np.where(mutual_best(li, ri, score), mutual_bar, threshold)
    return np.where(linked, np.minimum(np.abs(score - bar), np.abs(gap)),
                    np.where(score >= bar, np.abs(gap), bar - score + np.maximum(-gap, 0.0)))


def _eligible(li: np.ndarray, ri: np.ndarray, score: np.ndarray, threshold: float,
              mutual: bool) -> np.ndarray:
    """Per pair: the automatic rule would link it (at or above the threshold, or, with `mutual`,
    a mutual best pair above the near misses)."""
    best = best_scores(li, ri, score)
    bar = min(threshold, max(near_miss(best, threshold), MIN_THRESHOLD)) if mutual else threshold
    return eligible(li, ri, score, threshold, bar)


def held_out_links(scoring: str, comparators: dict[str, str], sims: dict[str, np.ndarray], li: np.ndarray,
                   ri: np.ndarray, records: int, at: np.ndarray, answers: np.ndarray,
                   mutual: bool = True, free: tuple[str, ...] = ()) -> np.ndarray:
    """Per labelled pair, whether the scorer would link it (its score, the threshold and the
    mutual-best rule) when fitted without its fold of the labels (every HELD_OUT_FOLDS-th
    label): what it says of the pair before anyone answered."""
    decided = np.zeros(len(at), dtype=bool)
    folds = min(HELD_OUT_FOLDS, len(at))
    fold = np.arange(len(at)) % max(folds, 1)
    for k in range(max(folds, 1)):
        out = fold == k if folds > 1 else np.ones(len(at), dtype=bool)
        keep = ~out if folds > 1 else np.zeros(len(at), dtype=bool)
        fitted = learn(scoring, comparators, sims, li, ri, records, at[keep], answers[keep], free)
        threshold = fitted.threshold
        if threshold is None:
            threshold, _ = otsu_threshold(best_scores(li, ri, fitted.score))
        decided[out] = _eligible(li, ri, fitted.score, threshold, mutual)[at[out]]
    return decided


def automatic_threshold(spec, best: np.ndarray) -> tuple[float, str]:
    """The cut of best-candidate scores that `auto_threshold` names (threshold.py)."""
    if spec.auto_threshold == "mixture":
        threshold, how, _ = mixture_threshold(best)
        return threshold, how
    return otsu_threshold(best)


def match(
    left: pd.DataFrame,
    right: pd.DataFrame,
    left_vecs: np.ndarray,
    right_vecs: np.ndarray,
    entity: EntitySpec,
    indexes: tuple[VectorIndex | None, VectorIndex | None] = (None, None),
    labels: tuple[np.ndarray, np.ndarray] | None = None,
    free: dict[str, tuple[np.ndarray, np.ndarray] | None] | None = None,
) -> Matches:
    """Link records of `left` to records of `right` one-to-one; see the module docstring.
    `indexes` are prebuilt vector indexes of the two sides, when the caller reuses them.
    `labels`: ([left, right] positions of answered pairs, answers 1/0): a `1` pair is linked
    whatever it scores (unless one-to-one assignment gives a record to another `1`), a `0`
    pair never; under `scoring: learned` they also refit the weights and the threshold.
    `free`: the free-text fields (scoring.free_text) with their own (left, right) vectors, or
    None when a free-text field is not embedded: none of them feeds blocking or code reading."""
    spec = entity.matching
    comparators = entity.compared_fields()
    free = free or {}
    blocking_fields = [f for f, kind in comparators.items() if kind in TEXT_KINDS and f not in free]
    for f in entity.embed_fields():
        if f not in blocking_fields and f not in free and entity.fields.get(f) == "str":
            blocking_fields.append(f)
    pairs = block(np.asarray(left_vecs, dtype=np.float32), np.asarray(right_vecs, dtype=np.float32),
                  _texts(left, blocking_fields), _texts(right, blocking_fields), spec.candidates, indexes)
    labelled, answers = (np.zeros((0, 2), np.int64), np.zeros(0)) if labels is None else labels
    labelled = np.asarray(labelled, dtype=np.int64).reshape(-1, 2)
    answers = np.asarray(answers, dtype=np.float64)
    blocked = len(pairs)
    pairs = _with_labelled(pairs, labelled)
    at = _label_positions(pairs, labelled) if len(labelled) else np.zeros(0, np.int64)
    li, ri = pairs[:, 0], pairs[:, 1]
    coded = code_fields(comparators, list(free))
    prepared = (Prepared(left, comparators, coded), Prepared(right, comparators, coded))
    vectors = (np.asarray(left_vecs), np.asarray(right_vecs))
    extra: dict[str, tuple[np.ndarray, np.ndarray]] = {f: v for f, v in free.items() if v is not None}
    score, sims = score_pairs(*prepared, comparators, *vectors, pairs, extra)
    model, fitted_threshold, fitted_how = None, None, ""
    if spec.scoring == "cosine":
        score = np.nan_to_num(sims["cos"])
    elif spec.scoring in LEARNED:
        records = len(left) + len(right)
        learned = learn(spec.scoring, comparators, sims, li, ri, records, at, answers, tuple(free))
        score, model = learned.score, learned.model
        fitted_threshold, fitted_how = learned.threshold, learned.how
    best = best_scores(li, ri, score)
    if spec.threshold is not None:
        threshold, how = float(spec.threshold), f"configured threshold {spec.threshold}"
    elif fitted_threshold is not None:
        threshold, how = fitted_threshold, fitted_how
    else:
        threshold, how = automatic_threshold(spec, best)
    mutual_bar = threshold
    if spec.mutual_best and spec.threshold is None:  # a configured threshold is a hard cut
        mutual_bar = min(threshold, max(near_miss(best, threshold), MIN_THRESHOLD))
        how += f"; mutual best pairs from {mutual_bar:.2f}"
    if len(pairs) > blocked:
        how += f"; {len(pairs) - blocked} labelled pair(s) blocking missed"
    linkable = eligible(li, ri, score, threshold, mutual_bar)
    if spec.scoring in LEARNED and len(at) and spec.threshold is None:
        unseen = held_out_links(spec.scoring, comparators, sims, li, ri, len(left) + len(right), at, answers,
                                spec.mutual_best, tuple(free))
    else:  # nothing was fitted to the labels: the scores are what the matcher said before them
        unseen = linkable[at]
    ranked = np.where(linkable, score, -1.0)
    ranked[at[answers == 1]] = 2.0  # an answered `yes` outranks every score
    ranked[at[answers == 0]] = -1.0
    chosen = assign(li, ri, ranked, 0.0)
    said = np.zeros(len(pairs), dtype=bool)
    said[at[answers == 1]] = True
    rules = ["match:labelled yes" if said[n] else f"match:score>={threshold:.2f}" if score[n] >= threshold
             else f"match:mutual best>{mutual_bar:.2f}" for n in chosen]
    linked = np.zeros(len(pairs), dtype=bool)
    linked[chosen] = True
    margin = decision_margin(li, ri, score, threshold, mutual_bar, linked)
    if spec.duplicates:
        twins, twin_rules = duplicate_links(left, right, prepared, vectors, comparators, li, ri, score,
                                            chosen, threshold)
        chosen = np.concatenate([chosen, twins])
        rules += twin_rules
    # a yes that one-to-one assignment left out (its record has another partner, say a second
    # listing of the same product): linked all the same, as one more record of that source
    taken = np.zeros(len(pairs), dtype=bool)
    taken[chosen] = True
    beside = np.flatnonzero(said & ~taken)
    chosen = np.concatenate([chosen, beside])
    rules += [f"{DUPLICATE_RULE}: labelled yes beside another partner"] * len(beside)
    evidence = [_evidence(sims, n) for n in chosen]
    links = pd.DataFrame({
        "left": li[chosen],
        "right": ri[chosen],
        "score": np.round(score[chosen], 4),
        "rule": [f"{r} ({e})" for r, e in zip(rules, evidence, strict=True)],
        "evidence": evidence,
    })
    scored = pd.DataFrame({"left": li, "right": ri, "score": score, **sims})
    scored["margin"] = margin
    scored["answer"] = np.nan
    scored["held_out"] = np.nan
    scored.loc[at, "answer"] = answers
    scored.loc[at, "held_out"] = unseen.astype(np.float64)
    return Matches(
        candidates=pd.DataFrame({"left": li, "right": ri}),
        scored=scored,
        links=links.sort_values(["left", "right"], kind="stable").reset_index(drop=True),
        threshold=threshold,
        threshold_rule=how,
        model=model,
    )
