"""Records to entities: links merged into clusters, strongest first, with a guard.

Key links (shared or cross-walked keys) always merge. Match links are taken in descending
score order (Kruskal style) and a merge is refused when it would put two records of the same
source into one entity (or, with `max_cluster_size > 0`, when the merged cluster would exceed
that size). A single weak link therefore cannot chain two established entities together: by
the time it is considered, each side already holds its stronger partners, and the merge is
refused. Every link keeps its score and rule, and says whether it was accepted.

Duplicate links (rule `match:duplicate ...`, see matching.py) come last. One may add a record
to an entity that already holds a record of the same source (its twin), and nothing more: the
two clusters may share that one source, no other.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

LINK_COLUMNS = ["left", "right", "score", "rule"]
KEY_RULE_PREFIX = "key:"
DUPLICATE_RULE_PREFIX = "match:duplicate"


class _Clusters:
    def __init__(self, sources: list[str]):
        self.parent = list(range(len(sources)))
        self.size = [1] * len(sources)
        self.sources = [Counter([s]) for s in sources]

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        if self.size[a] < self.size[b]:
            a, b = b, a
        self.parent[b] = a
        self.size[a] += self.size[b]
        self.sources[a] += self.sources[b]
        self.sources[b] = Counter()


def _refusal(state: _Clusters, a: int, b: int, tier: int, max_cluster_size: int) -> str:
    """Why merging clusters `a` and `b` by a match (tier 1) or duplicate (tier 2) link is refused;
    empty when it is allowed."""
    if max_cluster_size > 0:
        if state.size[a] + state.size[b] > max_cluster_size:
            return f"cluster would exceed {max_cluster_size} records"
        return ""
    shared = state.sources[a].keys() & state.sources[b].keys()
    if not shared:
        return ""
    if tier == 2 and len(shared) == 1:
        if state.size[a] == 1 or state.size[b] == 1:
            return ""  # the twin joins alone: its source is the one the two share
        return "a duplicate may join an entity alone, not bring a cluster with it"
    return "both clusters already hold a record of the same source"


def cluster(
    sources: list[str], links: pd.DataFrame, max_cluster_size: int = 0
) -> tuple[np.ndarray, pd.DataFrame]:
    """Cluster label per record (the smallest member position) and the links with an `accepted`
    column and, when refused, a `refused_because` reason."""
    state = _Clusters(sources)
    rule = links["rule"].astype(str)
    tier = np.where(rule.str.startswith(KEY_RULE_PREFIX), 0,
                    np.where(rule.str.startswith(DUPLICATE_RULE_PREFIX), 2, 1))
    ordered = links.assign(_tier=tier).sort_values(
        ["_tier", "score", "left", "right"], ascending=[True, False, True, True], kind="stable"
    )
    accepted = np.zeros(len(ordered), dtype=bool)
    reasons = [""] * len(ordered)
    for pos, (left, right, kind) in enumerate(
        zip(ordered["left"].to_numpy(), ordered["right"].to_numpy(), ordered["_tier"].to_numpy(), strict=True)
    ):
        a, b = state.find(int(left)), state.find(int(right))
        if a == b:
            accepted[pos] = True
            continue
        if kind:
            reason = _refusal(state, a, b, int(kind), max_cluster_size)
            if reason:
                reasons[pos] = reason
                continue
        state.union(a, b)
        accepted[pos] = True
    roots = np.array([state.find(i) for i in range(len(sources))], dtype=np.int64)
    # label each cluster by its smallest member so labels do not depend on merge order
    label_of_root: dict[int, int] = {}
    for i, r in enumerate(roots):
        label_of_root.setdefault(int(r), i)
    labels = np.array([label_of_root[int(r)] for r in roots], dtype=np.int64)
    result = ordered.drop(columns="_tier").assign(accepted=accepted, refused_because=reasons)
    return labels, result.sort_index()


def key_links(records: pd.DataFrame, link_keys: list[str]) -> pd.DataFrame:
    """Links between records (row positions) that share a normalised value of a link key."""
    frames = []
    positions = np.arange(len(records))
    for key in link_keys:
        values = records[key]
        present = values.notna().to_numpy()
        if not present.any():
            continue
        norm = values[present].astype(str).str.strip().str.casefold().to_numpy()
        pos = positions[present]
        order = np.lexsort((pos, norm))
        norm, pos = norm[order], pos[order]
        first = np.r_[True, norm[1:] != norm[:-1]]
        group_first = pos[np.maximum.accumulate(np.where(first, np.arange(len(pos)), 0))]
        chain = ~first  # link every record to the first of its group: a star, not all pairs
        if chain.any():
            frames.append(pd.DataFrame({
                "left": group_first[chain], "right": pos[chain],
                "score": 1.0, "rule": f"{KEY_RULE_PREFIX}{key}",
            }))
    if not frames:
        empty = pd.DataFrame(columns=LINK_COLUMNS)
        return empty.astype({"left": "int64", "right": "int64", "score": "float64"})
    return pd.concat(frames, ignore_index=True)
