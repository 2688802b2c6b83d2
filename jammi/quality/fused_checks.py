"""Checks on a fused entity frame: unique ids, coverage per source (how much of it meets another
source), conflict rate per field, cluster sizes, and how the matcher does on the pairs people
labelled. Each returns a CheckOutcome; none divides by zero on an empty frame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from jammi.quality.outcome import CheckOutcome
from jammi.spec.entities import EntitySpec

UNIQUE_ID = "unique_entity_id"
COVERAGE = "source_coverage"
CONFLICTS = "conflict_rate"
CLUSTER_SIZE = "cluster_size"
LABELS = "labelled_pairs"
FUSED_CHECKS = (UNIQUE_ID, COVERAGE, CONFLICTS, CLUSTER_SIZE, LABELS)


def unique_entity_id(fused: pd.DataFrame, id_col: str) -> CheckOutcome:
    ids = fused[id_col]
    dupes = ids[ids.duplicated(keep=False)]
    nulls = int(ids.isna().sum())
    bad = int(dupes.nunique()) + nulls
    return CheckOutcome(
        UNIQUE_ID, bad == 0, "error", float(bad), 0.0,
        f"{dupes.nunique()} repeated and {nulls} null entity ids among {len(fused)} entities",
        examples=sorted(dupes.astype(str).unique().tolist())[:10],
    )


def source_coverage(fused: pd.DataFrame, ent: EntitySpec) -> CheckOutcome:
    """Per source, the share of the entities it contributes to that another source also
    describes; the lowest share is the statistic. A source that meets no other source is not
    being fused (a wrong mapping, wrong compared fields, a broken link key); one source alone
    has nothing to meet and passes."""
    q = ent.quality
    if len(ent.sources) < 2:
        return CheckOutcome(COVERAGE, True, q.severity, 1.0, q.min_coverage,
                            "one source: nothing to fuse it with")
    if fused.empty:
        return CheckOutcome(COVERAGE, q.min_coverage == 0, q.severity, 0.0, q.min_coverage,
                            "no entities: no source meets another")
    sources = fused["_sources"].fillna("").str.split(",")
    shared = sources.map(len).to_numpy() > 1
    share = {}
    for s in ent.sources:
        has = sources.map(lambda xs, s=s: s in xs).to_numpy(dtype=bool)
        share[s] = float(shared[has].mean()) if has.any() else 0.0
    worst = min(share, key=share.get)
    return CheckOutcome(
        COVERAGE, share[worst] >= q.min_coverage, q.severity, share[worst], q.min_coverage,
        f"lowest coverage: another source also describes {share[worst]:.1%} of the entities "
        f"{worst!r} contributes to (at least {q.min_coverage:.0%} expected)",
        details={"coverage": share},
    )


def conflict_rate(provenance: pd.DataFrame, ent: EntitySpec) -> CheckOutcome:
    """Per field, the share of entities with two or more candidates whose values disagree
    (text differing only in case or whitespace agrees; see resolve.py)."""
    q = ent.quality
    contested = provenance[provenance["candidates"] > 1] if len(provenance) else provenance
    if contested.empty:
        return CheckOutcome(CONFLICTS, True, q.severity, 0.0, q.conflict_limit("default"),
                            "no field has two or more candidate values in any entity")
    rates = contested.groupby("field")["conflict"].mean().astype(float).to_dict()
    limits = {f: q.conflict_limit(f) for f in rates}
    over = {f: r for f, r in rates.items() if r > limits[f]}
    worst = max(rates, key=lambda f: (rates[f] - limits[f], rates[f]))  # nearest to (or most over) its limit
    examples = (contested[contested["field"].eq(worst) & contested["conflict"]]
                .head(10)[["field", "source", "record_id", "value"]].astype(str).to_dict("records"))
    verdict = (f"{len(over)} field(s) over their limit; " if over else "") + (
        f"closest to its limit: {worst!r} disagrees in {rates[worst]:.1%} of contested "
        f"entities (limit {limits[worst]:.0%})")
    return CheckOutcome(
        CONFLICTS, not over, q.severity, rates[worst], limits[worst], verdict,
        examples=examples, details={"conflict_rate": rates, "limits": limits},
    )


def cluster_size(fused: pd.DataFrame, id_col: str, ent: EntitySpec) -> CheckOutcome:
    """The largest entity must stay within `quality.max_cluster_size` records."""
    q = ent.quality
    sizes = fused["_record_count"].to_numpy(dtype=np.int64) if len(fused) else np.zeros(0, np.int64)
    largest = int(sizes.max()) if len(sizes) else 0
    dist = {str(k): int(v) for k, v in pd.Series(sizes).value_counts().sort_index().items()}
    giants = fused.loc[fused["_record_count"] > q.max_cluster_size, id_col].astype(str).head(10).tolist() \
        if len(fused) else []
    return CheckOutcome(
        CLUSTER_SIZE, largest <= q.max_cluster_size, "error", float(largest), float(q.max_cluster_size),
        f"largest entity has {largest} records (limit {q.max_cluster_size})",
        examples=giants,
        details={"size_distribution": dist,
                 "p95": float(np.percentile(sizes, 95)) if len(sizes) else 0.0},
    )


def labelled_pairs(decided: np.ndarray, answers: np.ndarray, ent: EntitySpec) -> CheckOutcome:
    """Precision and recall of the matcher on the pairs people answered (`jammi fusion review`,
    or a labels CSV): `decided` says whether the matcher's score alone links each pair, held
    out from its fold of the labels under learned scoring (jammi/fusion/labels.py); the links
    themselves always follow the answers. F1 is the statistic, `quality.min_label_f1` the bar."""
    q = ent.quality
    decided, answers = np.asarray(decided, dtype=bool), np.asarray(answers, dtype=bool)
    if not len(answers):
        return CheckOutcome(LABELS, True, q.severity, None, q.min_label_f1,
                            "no labelled pairs yet: `jammi fusion review` asks about the least sure")
    tp, fp = int((decided & answers).sum()), int((decided & ~answers).sum())
    fn, tn = int((~decided & answers).sum()), int((~decided & ~answers).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return CheckOutcome(
        LABELS, f1 >= q.min_label_f1, q.severity, f1, q.min_label_f1,
        f"on {len(answers)} labelled pairs ({tp + fn} yes, {fp + tn} no), scored before their own "
        f"answers were used: precision {precision:.1%}, recall {recall:.1%}, F1 {f1:.3f}",
        details={"precision": precision, "recall": recall, "true_pos": tp, "false_pos": fp,
                 "false_neg": fn, "true_neg": tn},
    )


def fused_checks(
    fused: pd.DataFrame, provenance: pd.DataFrame, id_col: str, ent: EntitySpec,
    labelled: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[CheckOutcome]:
    """Every check on a fused entity; `labelled`: (decided, answers) per labelled pair."""
    decided, answers = labelled if labelled is not None else (np.zeros(0, bool), np.zeros(0, bool))
    return [unique_entity_id(fused, id_col), source_coverage(fused, ent),
            conflict_rate(provenance, ent), cluster_size(fused, id_col, ent),
            labelled_pairs(decided, answers, ent)]
