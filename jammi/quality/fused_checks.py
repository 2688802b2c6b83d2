"""Checks on a fused entity frame: unique ids, coverage per source, conflict rate per field,
cluster sizes. Each returns a CheckOutcome; none divides by zero on an empty frame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from jammi.quality.outcome import CheckOutcome
from jammi.spec.entities import EntitySpec

UNIQUE_ID = "unique_entity_id"
COVERAGE = "source_coverage"
CONFLICTS = "conflict_rate"
CLUSTER_SIZE = "cluster_size"
FUSED_CHECKS = (UNIQUE_ID, COVERAGE, CONFLICTS, CLUSTER_SIZE)


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
    """Share of entities each source contributes to; the lowest share is the statistic."""
    q = ent.quality
    if fused.empty:
        return CheckOutcome(COVERAGE, q.min_coverage == 0, q.severity, 0.0, q.min_coverage,
                            "no entities: coverage is 0 for every source")
    sources = fused["_sources"].fillna("").str.split(",")
    share = {s: float(sources.map(lambda xs, s=s: s in xs).mean()) for s in ent.sources}
    worst = min(share, key=share.get)
    return CheckOutcome(
        COVERAGE, share[worst] >= q.min_coverage, q.severity, share[worst], q.min_coverage,
        f"lowest coverage: {worst!r} contributes to {share[worst]:.1%} of {len(fused)} entities",
        details={"coverage": share},
    )


def conflict_rate(provenance: pd.DataFrame, ent: EntitySpec) -> CheckOutcome:
    """Per field, the share of entities with two or more candidates whose values disagree."""
    q = ent.quality
    contested = provenance[provenance["candidates"] > 1] if len(provenance) else provenance
    if contested.empty:
        return CheckOutcome(CONFLICTS, True, q.severity, 0.0, q.max_conflict_rate,
                            "no field has two or more candidate values in any entity")
    rates = contested.groupby("field")["conflict"].mean().astype(float).to_dict()
    worst = max(rates, key=rates.get)
    examples = (contested[contested["field"].eq(worst) & contested["conflict"]]
                .head(10)[["field", "source", "record_id", "value"]].astype(str).to_dict("records"))
    return CheckOutcome(
        CONFLICTS, rates[worst] <= q.max_conflict_rate, q.severity, rates[worst], q.max_conflict_rate,
        f"highest conflict rate: {worst!r} disagrees in {rates[worst]:.1%} of contested entities",
        examples=examples, details={"conflict_rate": rates},
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


def fused_checks(
    fused: pd.DataFrame, provenance: pd.DataFrame, id_col: str, ent: EntitySpec
) -> list[CheckOutcome]:
    return [unique_entity_id(fused, id_col), source_coverage(fused, ent),
            conflict_rate(provenance, ent), cluster_size(fused, id_col, ent)]
