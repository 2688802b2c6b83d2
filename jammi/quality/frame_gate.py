"""Every configured check on one source's validated frame, as CheckOutcomes."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from jammi.embedding.texts import compose_texts
from jammi.quality import frame_checks as fc
from jammi.quality.near_duplicates import near_duplicate_check
from jammi.quality.outcome import CheckOutcome
from jammi.spec.project import Project, SourceSpec

COMPLETENESS = "completeness"
EXACT_DUPLICATES = "exact_duplicates"
NEAR_DUPLICATES = "near_duplicates"
OUTLIERS = "outliers"
SCHEMA_CONFORMANCE = "schema_conformance"
DISTRIBUTION_DRIFT = "distribution_drift"
MIN_ROWS_FOR_OUTLIERS = 20  # a median/MAD spread from fewer rows flags ordinary values
BASE_CHECKS = (COMPLETENESS, EXACT_DUPLICATES, NEAR_DUPLICATES, OUTLIERS, SCHEMA_CONFORMANCE,
               DISTRIBUTION_DRIFT)


def text_columns(project: Project, source: str) -> list[str]:
    """The columns the source's pipelines embed (all str columns when none embeds it)."""
    cols = [c for p in project.pipelines_of(source).values() for c in p.text_columns]
    spec = project.sources[source]
    fallback = [c for c, s in spec.columns.items() if s.type == "str" and c != spec.key]
    return list(dict.fromkeys(cols)) or fallback


def numeric_columns(spec: SourceSpec) -> list[str]:
    return [c for c, s in spec.columns.items() if s.type in ("int", "float") and c != spec.key]


def fk_check_name(column: str) -> str:
    return f"referential_integrity_{column}"


def check_names(spec: SourceSpec) -> list[str]:
    """The checks declared on the source's validated frame; a disabled near-duplicate check is
    left out rather than reported as passed."""
    base = [c for c in BASE_CHECKS if c != NEAR_DUPLICATES or spec.quality.near_duplicates.enabled]
    return [*base, *(fk_check_name(fk.column) for fk in spec.quality.foreign_keys)]


def frame_checks(
    project: Project,
    source: str,
    valid: pd.DataFrame,
    quarantine: pd.DataFrame,
    previous: pd.DataFrame | None,
    parent_keys: dict[str, pd.Series],
    total_rows: int | None = None,
    quarantined_rows: int | None = None,
    sampled: int | None = None,
) -> list[CheckOutcome]:
    """`previous` is the last successful validated frame (or its sample); `parent_keys` maps
    'source.column' of each declared foreign key to the parent's current key values.

    A large source's checks see a uniform sample of its valid rows (`sampled`: how many valid
    rows there are in all) and of its quarantine; `total_rows` and `quarantined_rows` are the
    exact counts that schema conformance's rate is made of. A sampled outcome says so."""
    spec = project.sources[source]
    q = spec.quality
    texts = text_columns(project, source)
    numeric = numeric_columns(spec)
    joined = compose_texts(valid, texts) if len(valid) else []
    outcomes = [
        fc.completeness(valid, q.completeness.required or texts, q.completeness.max_null_rate,
                        q.completeness.severity),
        fc.exact_duplicates(valid, spec.key, texts, q.exact_duplicates.max_rate, q.exact_duplicates.severity),
        _near_duplicates(valid, spec, joined),
        _outliers(valid, spec, texts, numeric),
        fc.schema_conformance(quarantine, len(valid) + len(quarantine) if total_rows is None else total_rows,
                              q.schema_conformance.max_rate, q.schema_conformance.severity,
                              quarantined=quarantined_rows),
        fc.distribution_drift(valid, previous, q.drift.numeric if q.drift.numeric is not None else numeric,
                              texts, q.drift.categorical, q.drift.ks_threshold, q.drift.psi_threshold,
                              q.drift.severity),
    ]
    outcomes = [o for o in outcomes if o is not None]
    for fk in q.foreign_keys:
        outcome = fc.referential_integrity(valid, fk.column, parent_keys.get(fk.references, pd.Series([])),
                                           fk.references, fk.max_orphans, fk.severity, key=spec.key)
        outcomes.append(replace(outcome, name=fk_check_name(fk.column)))
    if sampled is not None:
        outcomes = [o if o.name == SCHEMA_CONFORMANCE else replace(
            o, description=f"on a uniform sample of {len(valid)} of {sampled} valid rows: {o.description}",
            details={**(o.details or {}), "sample_rows": len(valid), "valid_rows": sampled})
            for o in outcomes]
    return outcomes


def _near_duplicates(valid: pd.DataFrame, spec: SourceSpec, joined: list[str]) -> CheckOutcome | None:
    q = spec.quality.near_duplicates
    if not q.enabled:
        return None
    return near_duplicate_check(valid[spec.key].astype(str).tolist() if len(valid) else [], joined,
                                threshold=q.threshold, max_rate=q.max_rate, severity=q.severity)


def _outliers(valid: pd.DataFrame, spec: SourceSpec, texts: list[str], numeric: list[str]) -> CheckOutcome:
    q = spec.quality.outliers
    if len(valid) < MIN_ROWS_FOR_OUTLIERS:
        return CheckOutcome(OUTLIERS, True, q.severity, 0.0, q.max_rate,
                            f"{len(valid)} rows: fewer than {MIN_ROWS_FOR_OUTLIERS}, "
                            "too few for a robust spread")
    return fc.outliers(valid, spec.key, texts, q.numeric if q.numeric is not None else numeric,
                       q.max_rate, q.severity, cutoff=q.cutoff)
