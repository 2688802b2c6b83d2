"""LSH banding of MinHash signatures, queried one row at a time with a bounded candidate list.

A row's candidates are the later rows (higher index) that share at least one band with it, so
each pair is seen once, from its first row. Nothing is materialized per pair: the bands are
kept as sorted row orders (3 int32 arrays per band), and `forward(i)` reads slices of them.
Templated texts flood a few buckets (thousands of rows per bucket at 100k texts), so one row
looks at no more than `cap` candidates: those sharing the most bands with it, then the nearest
in row order. Rows that had more are reported (`capped`), since a pair past the cap is missed.
"""

from __future__ import annotations

import numpy as np
from datasketch.lsh import _optimal_param

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant: a band's values are folded with it


def band_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) minimising weighted false rates at `threshold` (false negatives
    weighted 0.8), at least 2 bands."""
    b, r = _optimal_param(threshold, num_perm, 0.2, 0.8)
    return (b, r) if b >= 2 else (2, num_perm // 2)


def _band_keys(band: np.ndarray) -> np.ndarray:
    """One 64-bit key per row of a (rows, r) uint32 band; equal bands give equal keys (unequal
    ones collide with probability ~2**-64, which only adds a candidate that verification drops)."""
    h = np.zeros(len(band), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in band.T:
            h = (h ^ col.astype(np.uint64)) * _MIX
            h ^= h >> np.uint64(29)
    return h


class Bands:
    """The buckets of every band, as row orders; `forward(i)` gives row i's capped candidates."""

    def __init__(self, sig: np.ndarray, bands: int, rows_per_band: int, cap: int):
        n = len(sig)
        self.cap = cap
        self._order, self._pos, self._end = [], [], []
        has = np.zeros(n, dtype=bool)
        for k in range(bands):
            keys = _band_keys(sig[:, k * rows_per_band:(k + 1) * rows_per_band])
            order = np.argsort(keys, kind="stable")  # rows of a bucket stay in ascending order
            sorted_keys = keys[order]
            pos = np.empty(n, dtype=np.int32)
            pos[order] = np.arange(n, dtype=np.int32)
            change = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
            ends = np.diff(np.concatenate([change, [n]]), prepend=0)  # bucket sizes, in order
            bucket_end = np.repeat(np.concatenate([change, [n]]), ends).astype(np.int32)
            end = np.empty(n, dtype=np.int32)
            end[order] = bucket_end
            has |= pos + 1 < end
            self._order.append(order.astype(np.int32))
            self._pos.append(pos)
            self._end.append(end)
        self.with_candidates = np.flatnonzero(has)  # rows that have at least one later candidate

    def forward(self, i: int) -> tuple[np.ndarray, bool]:
        """Later rows sharing a band with row i (at most `cap`: most shared bands first, then
        lowest row), and whether row i had more than `cap`."""
        cap = self.cap
        parts, capped = [], False
        for order, pos, end in zip(self._order, self._pos, self._end, strict=True):
            p, e = int(pos[i]) + 1, int(end[i])
            if p < e:
                if e - p > cap:
                    capped, e = True, p + cap
                parts.append(order[p:e])
        if len(parts) == 1:
            return parts[0], capped
        rows, shared = np.unique(np.concatenate(parts), return_counts=True)
        if len(rows) > cap:
            capped = True
            rows = np.sort(rows[np.lexsort((rows, -shared))[:cap]])
        return rows, capped
