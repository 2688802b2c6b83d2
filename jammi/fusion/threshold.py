"""The automatic match threshold, read from the scores themselves (no labels, nothing per set).

Every record's best candidate score, from both sides, is one sample. A record that has a partner
in the other source puts its best score in a high mode; a record that has none puts a near-miss
there, in a lower mode. Two ways to split them:

* `otsu_threshold` (the default): the 100-bin histogram cut that maximises the between-class
  variance.
* `mixture_threshold` (`matching.auto_threshold: mixture`): a two-component Gaussian mixture
  fitted by EM; the threshold is where a score becomes likelier to come from the high component,
  each weighed by its share. bench/fusion_quality.py measures it as worse than Otsu on the four
  benchmark sets: the partnered mode is skewed towards 1, the fit splits it in two and the cut
  lands too high.

Both clamp to [`MIN_THRESHOLD`, `MAX_THRESHOLD`]; with fewer than `MIN_RECORDS` scores, or no
second mode, they fall back to `FALLBACK_THRESHOLD`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_THRESHOLD = 0.5
MAX_THRESHOLD = 0.95
FALLBACK_THRESHOLD = 0.75
MIN_SEPARATION = 0.5  # Otsu: between-class variance / total variance needed to call it bimodal
MIN_GAP = 1.0  # mixture: the two means must be this many (pooled) standard deviations apart
MIN_RECORDS = 10
MIN_SHARE = 0.01  # mixture: each component holds at least this share of the records
BINS = 100
EM_ITERATIONS = 300
EM_TOLERANCE = 1e-7
MIN_SD = 0.01


@dataclass(frozen=True)
class Split:
    """A fitted two-component mixture of best-candidate scores."""

    share: float  # weight of the high (partnered) component
    low: tuple[float, float]  # mean, standard deviation
    high: tuple[float, float]

    def posterior(self, x: np.ndarray | float) -> np.ndarray:
        """P(high component | score x)."""
        x = np.asarray(x, dtype=np.float64)
        lo = (1 - self.share) * _normal(x, *self.low)
        hi = self.share * _normal(x, *self.high)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(lo + hi > 0, hi / (lo + hi), (x > self.high[0]).astype(np.float64))

    def crossing(self, posterior: float) -> float:
        """The lowest score between the two means whose posterior reaches `posterior`."""
        grid = np.linspace(self.low[0], self.high[0], 2001)
        above = np.flatnonzero(self.posterior(grid) >= posterior)
        return float(grid[above[0]]) if len(above) else float(self.high[0])


def _normal(x: np.ndarray, mean: float, sd: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))


def _clean(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[~np.isnan(values)]


def fit_split(values: np.ndarray) -> Split | None:
    """EM fit of two Gaussians to `values`; None when there are too few or no second mode."""
    x = _clean(values)
    if len(x) < MIN_RECORDS or np.ptp(x) <= 0:
        return None
    lo_m, hi_m = np.quantile(x, [0.25, 0.9])
    sd = max(float(x.std()) / 2, MIN_SD)
    lo, hi, share = (float(lo_m), sd), (float(hi_m), sd), 0.5
    last = -np.inf
    for _ in range(EM_ITERATIONS):
        p_lo = (1 - share) * _normal(x, *lo)
        p_hi = share * _normal(x, *hi)
        total = np.maximum(p_lo + p_hi, 1e-300)
        r = p_hi / total
        loglik = float(np.log(total).sum())
        share = float(np.clip(r.mean(), 1e-6, 1 - 1e-6))
        w_hi, w_lo = r.sum(), (1 - r).sum()
        if w_hi <= 0 or w_lo <= 0:
            return None
        hi_mean, lo_mean = float((r * x).sum() / w_hi), float(((1 - r) * x).sum() / w_lo)
        hi = (hi_mean, max(float(np.sqrt((r * (x - hi_mean) ** 2).sum() / w_hi)), MIN_SD))
        lo = (lo_mean, max(float(np.sqrt(((1 - r) * (x - lo_mean) ** 2).sum() / w_lo)), MIN_SD))
        if abs(loglik - last) < EM_TOLERANCE * len(x):
            break
        last = loglik
    if hi[0] < lo[0]:
        lo, hi, share = hi, lo, 1 - share
    pooled = np.sqrt((lo[1] ** 2 + hi[1] ** 2) / 2)
    if min(share, 1 - share) < MIN_SHARE or (hi[0] - lo[0]) < MIN_GAP * pooled:
        return None
    return Split(share, lo, hi)


def _clamped(cut: float, how: str) -> tuple[float, str]:
    clamped = min(max(cut, MIN_THRESHOLD), MAX_THRESHOLD)
    note = "" if clamped == cut else f", clamped from {cut:.2f}"
    return clamped, f"{how} at {clamped:.2f}{note}"


def mixture_threshold(values: np.ndarray) -> tuple[float, str, Split | None]:
    """The threshold where the high component becomes the likelier, how it was chosen, and the
    fitted split (None when the fallback was used)."""
    x = _clean(values)
    split = fit_split(x)
    if split is None:
        why = f"only {len(x)} records scored" if len(x) < MIN_RECORDS else "best scores are not bimodal"
        return FALLBACK_THRESHOLD, f"fallback {FALLBACK_THRESHOLD} ({why})", None
    cut, how = _clamped(split.crossing(0.5), f"mixture split of {len(x)} best-candidate scores "
                        f"(low {split.low[0]:.2f}, high {split.high[0]:.2f}, {split.share:.0%} high)")
    return cut, how, split


def otsu_threshold(values: np.ndarray) -> tuple[float, str]:
    """Otsu's cut of a histogram of best-candidate scores, and how it was chosen."""
    values = _clean(values)
    if len(values) < MIN_RECORDS:
        return FALLBACK_THRESHOLD, f"fallback {FALLBACK_THRESHOLD} (only {len(values)} records scored)"
    hist, edges = np.histogram(values, bins=BINS, range=(0.0, 1.0))
    p = hist / hist.sum()
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    mu = np.cumsum(p * mids)
    mu_t = mu[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        between = (mu_t * w0 - mu) ** 2 / (w0 * (1 - w0))
    between = np.where((w0 > 0) & (w0 < 1), between, 0.0)
    total = float(np.sum(p * (mids - mu_t) ** 2))
    best = int(np.argmax(between))
    if total <= 0 or between[best] / total < MIN_SEPARATION:
        return FALLBACK_THRESHOLD, f"fallback {FALLBACK_THRESHOLD} (best scores are not bimodal)"
    return _clamped(float(edges[best + 1]), f"otsu split of {len(values)} best-candidate scores")
