"""Connectivity and example pairs of near-duplicate groups, in memory bounded by the row count.

A *group* is the set of rows with one normalised text. `Components` is a union-find over
groups that keeps every group's root current (the smaller component is relabelled on a union,
O(n log n) in all), so the roots of a whole candidate array are one gather. `TopPairs` keeps the
`limit` most similar row pairs (ties: lower rows first) out of any number offered, expanding a
group or an edge between two groups only as far as the limit can use.
"""

from __future__ import annotations

import numpy as np


class Components:
    def __init__(self, n: int):
        self.root = np.arange(n, dtype=np.int64)
        self._members: dict[int, list[int]] = {}

    def union(self, a: int, b: int) -> bool:
        """Joins the components of groups a and b; False when they were already one."""
        ra, rb = int(self.root[a]), int(self.root[b])
        if ra == rb:
            return False
        ma = self._members.get(ra, [ra])
        mb = self._members.get(rb, [rb])
        if len(ma) < len(mb):
            ra, rb, ma, mb = rb, ra, mb, ma
        self.root[mb] = ra
        ma.extend(mb)
        self._members[ra] = ma
        self._members.pop(rb, None)
        return True


def _first_pairs(a: np.ndarray, b: np.ndarray | None, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `limit` pairs (lo, hi), lo < hi, in (lo, hi) order: of distinct rows of the
    sorted array `a` when `b` is None, else with one row from each of the sorted, disjoint `a`
    and `b`. Only the pairs kept are built."""
    if b is None:
        los, partners, starts = a, [a] * len(a), np.arange(1, len(a) + 1)
    else:
        los = np.concatenate([a, b])
        in_b = np.concatenate([np.zeros(len(a), dtype=bool), np.ones(len(b), dtype=bool)])
        order = np.argsort(los, kind="stable")
        los, in_b = los[order], in_b[order]
        partners = [a if t else b for t in in_b.tolist()]
        starts = np.where(in_b, np.searchsorted(a, los, side="right"),
                          np.searchsorted(b, los, side="right"))
    sizes = np.fromiter((len(p) for p in partners), dtype=np.int64, count=len(partners))
    counts = sizes - starts
    reach = min(len(los), int(np.searchsorted(np.cumsum(counts), limit, side="left")) + 1)
    lo, hi, taken = [], [], 0
    for x in range(reach):
        k = min(int(counts[x]), limit - taken)
        if k > 0:
            lo.append(np.full(k, los[x], dtype=np.int64))
            hi.append(partners[x][starts[x]:starts[x] + k].astype(np.int64))
            taken += k
    if not lo:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(lo), np.concatenate(hi)


class TopPairs:
    """The `limit` most similar pairs offered, most similar first, then by (row_a, row_b)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._sim: list[np.ndarray] = []
        self._a: list[np.ndarray] = []
        self._b: list[np.ndarray] = []
        self._held = 0

    def add_group(self, rows: np.ndarray) -> None:
        """Every pair of one group's rows (similarity 1.0); `rows` sorted."""
        lo, hi = _first_pairs(rows, None, self.limit)
        self._add(np.ones(len(lo)), lo, hi)

    def add_edge(self, rows_a: np.ndarray, rows_b: np.ndarray, sim: float) -> None:
        """Every pair across two groups (each `rows` sorted) at similarity `sim`."""
        if len(rows_a) == 1 and len(rows_b) == 1:
            lo, hi = min(rows_a[0], rows_b[0]), max(rows_a[0], rows_b[0])
            self._add(np.array([sim]), np.array([lo], dtype=np.int64), np.array([hi], dtype=np.int64))
            return
        lo, hi = _first_pairs(rows_a, rows_b, self.limit)
        self._add(np.full(len(lo), sim), lo, hi)

    def _add(self, sim: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        self._sim.append(sim)
        self._a.append(a)
        self._b.append(b)
        self._held += len(sim)
        if self._held > 2 * self.limit:
            self._trim()

    def _trim(self) -> None:
        sim, a, b = self.arrays()
        self._sim, self._a, self._b, self._held = [sim], [a], [b], len(sim)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(similarity, row_a, row_b) of the kept pairs, in order."""
        if not self._sim:
            empty = np.empty(0, dtype=np.int64)
            return np.empty(0), empty, empty
        sim, a, b = np.concatenate(self._sim), np.concatenate(self._a), np.concatenate(self._b)
        order = np.lexsort((b, a, -sim))[:self.limit]
        return sim[order], a[order], b[order]
