"""Match weights learned from the data: the Fellegi-Sunter model fitted with EM, no labels
needed, and refitted to labels when people have answered some pairs.

Each compared field's similarity (scoring.py; `cos` for the embedding cosine) is cut into
*agreement levels* (`LEVELS`): a `text` similarity of 0.97 is level "≥ 0.95", a null is no
evidence and drops out of the pair, as it does in the hand-weighted score. Per field and level
the model holds

* m: the share of true matches whose field falls at that level,
* u: the share of non-matches whose field falls there,

and the prior λ, the share of candidate pairs that are matches. A pair's match weight is
log2(λ / (1 - λ)) + Σ log2(m / u) over its fields with evidence, and its match probability is
2^w / (1 + 2^w). A field whose levels are as common among matches as among non-matches
(a column of random words, a long description every record words its own way) gets
m ≈ u, so weights near 0 at every level: declaring it cannot drown the fields that do tell
matches apart, which a fixed weighted mean cannot promise.

Fitting (`fit_em`), as Splink and fastLink do it, per entity and pair of sources, over the
candidate pairs that blocking proposed: the E-step gives each pair its match probability under
the current m, u and λ; the M-step sets m and u to the probability-weighted level counts (with
a pseudo-count of `SMOOTHING` per level, so no level is impossible) and λ to the mean
probability. Unlike Splink, u is fitted here too rather than fixed from random pairs: scoring
only ever compares candidates, and a candidate non-match looks much more alike than a random
pair (blocking chose it), so u measured on random pairs would make every shared word look like
evidence. The start is field-agnostic: u is each level's share of all candidates (nearly all of
them non-matches), m leans towards the higher levels (`M_START`), λ one candidate in
`START_CANDIDATES` per record. Iterations stop when λ and every m and u move less than
`TOLERANCE`, or after `MAX_ITERATIONS`.

The default scorer (`scoring: learned`, matching.learn) does not link on the match
probability: the fields are not independent given the truth (a title, the codes read from it
and its embedding say the same thing thrice), so the probabilities come out overconfident and
rank pairs across records badly. It uses the model to say how much each field tells matches
apart (`MatchModel.separation`, `importance`) and scores the weighted mean of the similarities,
each field's hand weight times its importance (`mean_weights`).

A record can have at most one partner in the other source, so the E-step caps each record's
expected partners at one (`one_to_one`); without it EM learns "similar products" rather than
"the same product" (a prior of 13% of Amazon-Google's candidates instead of 1.6%).

Labels: pairs people answered keep their answer as their probability through EM (a `y` is 1,
an `n` 0: they steer m and u, `LABEL_WEIGHT` times a pair's say). For the learned mean,
`fit_mean` then fits a logistic model of the answers, P(yes) = σ(slope · (mean - threshold) +
context · γ), with priors centred on the label-free fit (`MEAN_PRIOR_SD` on log weights,
`THRESHOLD_SD` on the threshold, `SLOPE_SD` on the log slope, `CONTEXT_SD` on what the pair's
rival candidates say: matching.refit), from the first answer on: the priors are what keeps a
few answers from moving it far. The people answer the pairs the matcher is least sure of, most
of them in a close contest with a rival, so the answers are a sample of the hardest pairs,
not of all: `MEAN_PRIOR_SD` is tight (a weight moves by a factor of 1.6 at two standard deviations)
so that such a sample nudges the weights rather than turns them over. For the plain
probability (`scoring: fellegi_sunter`), `calibrate` fits one scale per field on its EM weight
plus an intercept, with priors `PRIOR_SD` and the looser `INTERCEPT_SD`, and the threshold
becomes the calibrated probability 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COSINE = "cos"
# cut points per comparator: a similarity at or above the k-th cut (ascending) is level k + 1;
# below the first cut is level 0; NaN is no evidence (level -1)
LEVELS: dict[str, tuple[float, ...]] = {
    "text": (0.5, 0.7, 0.85, 0.95),
    "name": (0.5, 0.7, 0.85, 0.95),
    "code": (1.0,),
    "number": (0.7, 0.9, 0.99),
    "year": (1.0,),
    "exact": (1.0,),
    COSINE: (0.6, 0.7, 0.8, 0.85, 0.9, 0.95),
}
SMOOTHING = 0.5
M_START = 2.0  # start: m of level k proportional to M_START ** k
START_CANDIDATES = 10
MAX_ITERATIONS = 200
TOLERANCE = 1e-5
MIN_PROBABILITY = 1e-6
LABEL_WEIGHT = 20.0
PRIOR_SD = 0.5  # per-field scale: the labels' pull away from the EM weights
MEAN_PRIOR_SD = 0.25  # the learned mean's log weights: the labels' pull away from the label-free weights
INTERCEPT_SD = 4.0  # the threshold (intercept, in bits) is freer: labels mostly move it
MAX_STEP = 1.0
TRUSTED_BITS = 1.0  # a declared (not free-text) field at or above this separation keeps its hand weight
THRESHOLD_SD = 0.05  # the learned mean's threshold: labels move it by a few hundredths at a time
SLOPE_SD = 1.0  # on log slope
SLOPE = 30.0  # the learned mean's score rises from 0.1 to 0.9 P(yes) over ~0.15 around the threshold
NEWTON_STEPS = 50
HELD_OUT_FOLDS = 5
CONTEXT_SD = 1.0  # a context feature (mutual best, margin over the runner-up) starts at no say, in logits


def level_names(kind: str) -> list[str]:
    """Readable names of a comparator's levels, lowest first."""
    cuts = LEVELS[kind]
    if cuts == (1.0,):
        return ["differ", "agree"]
    return [f"< {cuts[0]:g}"] + [f">= {c:g}" for c in cuts]


def to_levels(kind: str, sim: np.ndarray) -> np.ndarray:
    """Agreement level of each similarity (-1 where it is NaN: no evidence)."""
    sim = np.asarray(sim, dtype=np.float64)
    out = np.searchsorted(np.asarray(LEVELS[kind]), np.nan_to_num(sim, nan=-1.0), side="right")
    return np.where(np.isnan(sim), -1, out).astype(np.int64)


@dataclass
class FieldModel:
    kind: str
    m: np.ndarray
    u: np.ndarray

    def weights(self) -> np.ndarray:
        """log2(m / u) per level: the bits of evidence the level gives."""
        return np.log2(self.m / self.u)


@dataclass
class MatchModel:
    """A fitted Fellegi-Sunter model for one pair of sources."""

    fields: dict[str, FieldModel]
    prior: float  # λ: share of candidate pairs that match
    iterations: int = 0
    converged: bool = False
    scale: dict[str, float] = field(default_factory=dict)  # label calibration per field (1: none)
    intercept: float | None = None  # label calibration's intercept (None: log2 prior odds)
    labels: int = 0
    mean_weights: dict[str, float] = field(default_factory=dict)  # the learned mean's, once fitted
    free: tuple[str, ...] = ()  # the free-text fields, weighed against the best field (importance)

    def field_weights(self, levels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each field's contribution in bits per pair (0 where it has no evidence)."""
        out = {}
        for name, fm in self.fields.items():
            lv = levels[name]
            w = fm.weights()[np.clip(lv, 0, None)] * self.scale.get(name, 1.0)
            out[name] = np.where(lv < 0, 0.0, w)
        return out

    def match_weight(self, levels: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(levels.values()))) if levels else 0
        total = np.full(n, self.bias())
        for w in self.field_weights(levels).values():
            total += w
        return total

    def bias(self) -> float:
        if self.intercept is not None:
            return self.intercept
        return float(np.log2(self.prior / (1 - self.prior)))

    def probability(self, levels: dict[str, np.ndarray]) -> np.ndarray:
        return probability(self.match_weight(levels))

    def separation(self) -> dict[str, float]:
        """Per field, how far apart matches and non-matches fall over its levels: the Jeffreys
        divergence Σ (m - u) log2(m / u), in bits (0: the field says nothing)."""
        return {name: float(((fm.m - fm.u) * fm.weights()).sum()) for name, fm in self.fields.items()}

    def importance(self, free: tuple[str, ...] = ()) -> dict[str, float]:
        """Per field, the share of its hand weight it keeps. A declared field keeps all of it
        from TRUSTED_BITS of separation on, and less in proportion below (a column that says
        nothing keeps nothing). A free-text field (`free`: its text comparator and its own
        cosine, `cos_<field>`) keeps its separation relative to the best field's: averaged in
        at full weight, a description that says a little dilutes the fields that say a lot."""
        separation = {name: max(j, 0.0) for name, j in self.separation().items()}
        top = max(separation.values(), default=0.0)
        out = {}
        for name, j in separation.items():
            if name in free or name.removeprefix("cos_") in free and name != "cos":
                out[name] = j / top if top > 0 else 0.0
            else:
                out[name] = min(1.0, j / TRUSTED_BITS)
        return out

    def describe(self) -> dict:
        """m, u and the weight in bits per field and level, for metadata and docs."""
        return {
            "prior": round(self.prior, 6), "iterations": self.iterations, "converged": self.converged,
            "labels": self.labels,
            **({"intercept": round(self.intercept, 3)} if self.intercept is not None else {}),
            **({"mean_weights": {k: round(v, 3) for k, v in self.mean_weights.items()}}
               if self.mean_weights else {}),
            "fields": {
                name: {
                    "kind": fm.kind,
                    "separation_bits": round(self.separation()[name], 3),
                    "importance": round(self.importance(self.free)[name], 3),
                    **({"scale": round(self.scale[name], 3)} if name in self.scale else {}),
                    "levels": {lvl: {"m": round(float(m), 4), "u": round(float(u), 4),
                                     "bits": round(float(w), 2)}
                               for lvl, m, u, w in zip(level_names(fm.kind), fm.m, fm.u, fm.weights(),
                                                       strict=True)},
                } for name, fm in self.fields.items()
            },
        }


def probability(weight: np.ndarray) -> np.ndarray:
    """2^w / (1 + 2^w), computed without overflow."""
    return 1.0 / (1.0 + np.exp2(-np.clip(np.asarray(weight, dtype=np.float64), -60, 60)))


def pair_levels(kinds: dict[str, str], sims: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Levels of every compared field (and the cosine, when it has evidence anywhere)."""
    out = {name: to_levels(kind, sims[name]) for name, kind in kinds.items() if name in sims}
    for name, sim in sims.items():  # the record's cosine, and each free-text field's own
        if name.startswith(COSINE) and not np.isnan(sim).all():
            out[name] = to_levels(COSINE, sim)
    return out


def _kinds(kinds: dict[str, str], levels: dict[str, np.ndarray]) -> dict[str, str]:
    return {name: (COSINE if name.startswith(COSINE) else kinds[name]) for name in levels}


def _counts(lv: np.ndarray, size: int, weight: np.ndarray) -> np.ndarray:
    has = lv >= 0
    return np.bincount(lv[has], weights=weight[has], minlength=size)[:size] + SMOOTHING


def _start(kinds: dict[str, str], levels: dict[str, np.ndarray], pairs: int,
           records: int) -> MatchModel:
    fields = {}
    for name, lv in levels.items():
        size = len(LEVELS[kinds[name]]) + 1
        u = _counts(lv, size, np.ones(len(lv)))
        m = M_START ** np.arange(size, dtype=np.float64)
        fields[name] = FieldModel(kinds[name], m / m.sum(), u / u.sum())
    prior = min(0.5, max(records / max(pairs, 1) / START_CANDIDATES, MIN_PROBABILITY))
    return MatchModel(fields, prior)


def _m_step(model: MatchModel, levels: dict[str, np.ndarray], match_weight: np.ndarray,
            other_weight: np.ndarray) -> float:
    """Refit m, u and λ from each row's (pattern's) summed match and non-match probabilities;
    the largest change of any parameter."""
    moved = 0.0
    for name, fm in model.fields.items():
        lv = levels[name]
        m = _counts(lv, len(fm.m), match_weight)
        u = _counts(lv, len(fm.u), other_weight)
        m, u = m / m.sum(), u / u.sum()
        moved = max(moved, float(np.abs(m - fm.m).max()), float(np.abs(u - fm.u).max()))
        fm.m, fm.u = m, u
    total = match_weight.sum() + other_weight.sum()
    prior = float(np.clip(match_weight.sum() / total, MIN_PROBABILITY, 1 - MIN_PROBABILITY))
    moved = max(moved, abs(prior - model.prior))
    model.prior = prior
    return moved


def _patterns(levels: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The distinct level patterns (field -> level per pattern) and each pair's pattern: EM
    works on a few hundred patterns instead of millions of pairs, as fastLink does."""
    names = list(levels)
    if len(names) <= 12:  # mixed radix: a level is -1..15, 5 bits each, 12 fields to an int64
        code = np.zeros(len(levels[names[0]]), dtype=np.int64)
        for name in names:
            code = code * 32 + (levels[name] + 1)
        _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(np.column_stack([levels[k] for k in names]), axis=0,
                                      return_index=True, return_inverse=True)
    return {name: levels[name][first] for name in names}, np.asarray(inverse).ravel()


def one_to_one(p: np.ndarray, sides: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Match probabilities capped so that no record expects more than one partner: each pair's
    probability scaled by the smaller of its two records' 1 / (sum of their pairs' probabilities),
    where that sum exceeds 1."""
    out = p
    for side in sides:
        total = np.bincount(side, weights=p)
        out = np.minimum(out, p / np.maximum(total[side], 1.0))
    return out


def fit_em(kinds: dict[str, str], levels: dict[str, np.ndarray], records: int,
           labels: tuple[np.ndarray, np.ndarray] | None = None,
           sides: tuple[np.ndarray, np.ndarray] | None = None) -> MatchModel:
    """Fit m, u and λ over the candidate pairs' `levels` (field -> level per pair). `records`:
    how many records the two sources hold (the start's prior). `labels`: (pair positions,
    answers as 1/0) that keep their answer through EM. `sides`: each pair's left and right
    record; the E-step then lets no record expect more than one partner (`one_to_one`)."""
    kinds = _kinds(kinds, levels)
    n = len(next(iter(levels.values()))) if levels else 0
    model = _start(kinds, levels, n, records)
    if not levels or n == 0:
        return model
    weight = np.ones(n)
    fixed, answers = (np.zeros(0, np.int64), np.zeros(0)) if labels is None else labels
    weight[fixed] = LABEL_WEIGHT
    patterns, inverse = _patterns(levels)
    size = len(next(iter(patterns.values())))
    for it in range(1, MAX_ITERATIONS + 1):
        p = model.probability(patterns)[inverse]
        if sides is not None:
            p = one_to_one(p, sides)
        p[fixed] = answers
        moved = _m_step(model, patterns, np.bincount(inverse, weights=p * weight, minlength=size),
                        np.bincount(inverse, weights=(1 - p) * weight, minlength=size))
        model.iterations = it
        if moved < TOLERANCE:
            model.converged = True
            break
    return model


def calibrate(model: MatchModel, levels: dict[str, np.ndarray], pairs: np.ndarray,
              answers: np.ndarray) -> MatchModel:
    """Fit the per-field scales and the intercept to labelled pairs (positions `pairs`, answers
    1/0) by penalised logistic regression in bits, the prior centred on the EM model (scales 1,
    intercept log2 prior odds). Returns the model with `scale` and `intercept` set."""
    names = list(model.fields)
    if not len(pairs) or not names:
        return model
    sub = {k: v[pairs] for k, v in levels.items()}
    per_field = model.field_weights(sub)
    x = np.column_stack([per_field[k] for k in names] + [np.ones(len(pairs))]) * np.log(2)
    centre = np.r_[np.ones(len(names)), model.bias()]
    beta = centre.copy()
    y = np.asarray(answers, dtype=np.float64)
    penalty = np.r_[np.full(len(names), 1.0 / PRIOR_SD ** 2), 1.0 / INTERCEPT_SD ** 2]
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -60, 60)))
        grad = x.T @ (p - y) + penalty * (beta - centre)
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        step *= min(1.0, MAX_STEP / max(float(np.abs(step).max()), 1e-12))  # damped: no overshoot
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    model.scale = {k: float(b) for k, b in zip(names, beta[:-1], strict=True)}
    model.intercept = float(beta[-1])
    model.labels = int(len(pairs))
    return model


@dataclass
class MeanFit:
    """Weights of the weighted mean and its threshold, fitted to labelled pairs; with context
    features, their coefficients too (`context`, in logits)."""

    weights: dict[str, float]
    threshold: float
    slope: float
    labels: int
    context: np.ndarray = field(default_factory=lambda: np.zeros(0))


def mean_weights(model: MatchModel, base: dict[str, float], free: tuple[str, ...] = ()) -> dict[str, float]:
    """The learned mean's weights: each field's `base` weight (scoring.WEIGHTS for its kind, the
    cosine's weight for `cos`) times the importance EM found in it."""
    model.free = free
    importance = model.importance(free)
    return {name: base[name] * importance.get(name, 0.0) for name in base}


def fit_mean(sims: dict[str, np.ndarray], start: dict[str, float], threshold: float, pairs: np.ndarray,
             answers: np.ndarray, context: np.ndarray | None = None,
             context_sd: np.ndarray | float = CONTEXT_SD,
             context_centre: np.ndarray | float = 0.0) -> MeanFit:
    """Fit the weighted mean's weights and threshold to labelled pairs: the answers' likelihood
    under P(yes) = σ(slope · (mean - threshold) + context · γ), with Gaussian priors centred on
    the label-free fit (log weight: `MEAN_PRIOR_SD`; threshold: `THRESHOLD_SD`; log slope around
    `SLOPE`; each context coefficient around 0: `CONTEXT_SD`), so a few answers nudge it and
    many answers move it. `context`: per labelled pair, features beside the fields (matching's
    `context_features`). Fields without weight stay out."""
    from scipy.optimize import minimize

    names = [n for n, w in start.items() if w > 0 and n in sims]
    y = np.asarray(answers, dtype=np.float64)
    ctx = np.zeros((len(pairs), 0)) if context is None else np.asarray(context, dtype=np.float64)
    k = ctx.shape[1]
    if not len(pairs) or not names:
        return MeanFit(dict(start), threshold, SLOPE, 0, np.broadcast_to(context_centre, (k,)).copy())
    values = np.column_stack([sims[n][pairs] for n in names])
    has = ~np.isnan(values)
    values = np.nan_to_num(values)
    m = len(names)
    centre = np.r_[np.log([start[n] for n in names]), threshold, np.log(SLOPE),
                   np.broadcast_to(context_centre, (k,))]
    spread = np.r_[np.full(m, MEAN_PRIOR_SD), THRESHOLD_SD, SLOPE_SD, np.broadcast_to(context_sd, (k,))]

    def loss(theta: np.ndarray) -> float:
        w = np.exp(theta[:m])
        weight = has @ w
        mean = np.where(weight > 0, (values * has) @ w / np.maximum(weight, 1e-12), 0.0)
        z = np.exp(theta[m + 1]) * (mean - theta[m]) + ctx @ theta[m + 2:]
        nll = float((np.logaddexp(0.0, z) - y * z).sum())
        return nll + float((((theta - centre) / spread) ** 2).sum() / 2)

    best = minimize(loss, centre, method="L-BFGS-B")
    theta = best.x
    fitted = dict(start)
    fitted.update({n: float(np.exp(t)) for n, t in zip(names, theta[:m], strict=True)})
    return MeanFit(fitted, float(theta[m]), float(np.exp(theta[m + 1])), int(len(pairs)),
                   theta[m + 2:].copy())
