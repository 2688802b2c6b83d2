"""Splink (DuckDB backend) on the same records, candidates and declaration as Jammi's matcher,
for bench/fusion_quality.py.

Each Jammi comparator becomes the nearest Splink comparison, with the same agreement levels
as jammi/fusion/weights.py where Splink can express them:

* `text`: token Jaccard of the casefolded words (>= 0.95, 0.85, 0.7, 0.5), a custom level in
  DuckDB SQL (Splink's own Jaccard is over characters, no use for titles);
* `name`: token Jaccard of the surnames;
* `code`: ArrayIntersectAtSizes over the record's model codes (Jammi's `codes`), null when
  either side has none;
* `number`: relative difference (<= 0.01, 0.1, 0.3), null when either is null or 0;
* `year`, `exact`: ExactMatch on the normalised value;
* the embedding: CosineSimilarityAtThresholds on the same all-MiniLM-L6-v2 vectors.

Blocking: Jammi's own candidate pairs, so both score the same pairs and the blocking recall is
the same: every record carries one token per candidate pair it is in, and Splink blocks on the
exploded tokens (`block_on(..., arrays_to_explode=...)`), which joins exactly those pairs (EM,
which cannot explode, joins on `list_has_any` of the token lists: the same pairs).

Training, label-free, as Splink's tutorials do it: u from 1e6 random pairs
(`estimate_u_using_random_sampling`), then EM over the candidate pairs for m and λ
(`estimate_parameters_using_expectation_maximisation`, u fixed, λ taken from the session).
Two decisions are scored: Splink's own (every pair with match probability >= 0.5), and the
same probabilities through Jammi's one-to-one assignment (greedy by probability, >= 0.5), so
the scorers are compared on equal terms.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from jammi.fusion.blocking import words
from jammi.fusion.matching import assign
from jammi.fusion.scoring import _surnames, field_codes

TEXT_CUTS = (0.95, 0.85, 0.7, 0.5)
NUMBER_CUTS = (0.01, 0.1, 0.3)
COSINE_CUTS = (0.95, 0.9, 0.85, 0.8, 0.7, 0.6)
RANDOM_PAIRS = 1e6
SEED = 27


def _tokens(value, kind: str) -> list[str] | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if kind == "name":
        text = _surnames(str(value))
        return sorted(set(text.split())) if text else None
    found = sorted(set(words(str(value))))
    return found or None


def _jaccard(col: str, cuts: tuple[float, ...]) -> dict:
    overlap = (f"len(list_intersect({col}_l, {col}_r)) / "
               f"len(list_distinct(list_concat({col}_l, {col}_r)))")
    return {"output_column_name": col, "comparison_levels": [
        {"sql_condition": f"{col}_l IS NULL OR {col}_r IS NULL", "is_null_level": True},
        *[{"sql_condition": f"{overlap} >= {c}", "label_for_charts": f"jaccard >= {c}"} for c in cuts],
        {"sql_condition": "ELSE", "label_for_charts": "else"},
    ]}


def _relative(col: str) -> dict:
    diff = f"abs({col}_l - {col}_r) / greatest(abs({col}_l), abs({col}_r))"
    return {"output_column_name": col, "comparison_levels": [
        {"sql_condition": f"{col}_l IS NULL OR {col}_r IS NULL OR {col}_l = 0 OR {col}_r = 0",
         "is_null_level": True},
        *[{"sql_condition": f"{diff} <= {c}", "label_for_charts": f"within {c:.0%}"} for c in NUMBER_CUTS],
        {"sql_condition": "ELSE", "label_for_charts": "else"},
    ]}


def splink_frames(records: pd.DataFrame, vectors: np.ndarray, comparators: dict[str, str],
                  candidates: pd.DataFrame, left: str, right: str) -> tuple[pa.Table, pa.Table]:
    """Each source's records as Splink input: unique_id, the compared fields in comparable form,
    the embedding, and the candidate-pair tokens."""
    frames = {}
    token_of: dict[tuple[str, str], list[str]] = {}
    fwd = candidates["left_source"] == left
    lid = np.where(fwd, candidates["left_id"], candidates["right_id"])
    rid = np.where(fwd, candidates["right_id"], candidates["left_id"])
    for n, (a, b) in enumerate(zip(lid, rid, strict=True)):
        token_of.setdefault((left, str(a)), []).append(str(n))
        token_of.setdefault((right, str(b)), []).append(str(n))
    for source in (left, right):
        mask = (records["_source"] == source).to_numpy()
        part = records[mask]
        out = pd.DataFrame({"unique_id": part["_record_id"].astype(str).to_numpy()})
        for field, kind in comparators.items():
            values = part[field].astype(object).where(part[field].notna(), None).tolist()
            if kind in ("text", "name"):
                out[field] = [_tokens(v, kind) for v in values]
            elif kind == "code":
                texts = [" ".join(str(part[f].iloc[i]) for f, k in comparators.items()
                                  if k in ("text", "name", "code") and pd.notna(part[f].iloc[i]))
                         for i in range(len(part))]
                out[field] = [sorted(field_codes(t)) or None for t in texts]
            elif kind in ("number", "year"):
                out[field] = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy()
            else:
                out[field] = [None if v is None else "".join(words(str(v))) or None for v in values]
        out["pair_tokens"] = [token_of.get((source, i), ["-"]) for i in out["unique_id"]]
        table = pa.Table.from_pandas(out, preserve_index=False)
        vecs = np.ascontiguousarray(vectors[mask], dtype=np.float32)
        # DuckDB's array_cosine_similarity wants fixed-size FLOAT arrays; an empty text has none
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), vecs.shape[1],
                                                      mask=pa.array(np.abs(vecs).sum(axis=1) == 0))
        frames[source] = table.append_column("embedding", embedding)
    return frames[left], frames[right]


def run_splink(records: pd.DataFrame, vectors: np.ndarray, comparators: dict[str, str],
               candidates: pd.DataFrame, left: str, right: str, one_partner_prior: bool = False) -> dict:
    """Train Splink label-free and predict over Jammi's candidates; returns the predicted pairs
    (left id, right id, probability) and the time taken."""
    import splink
    import splink.comparison_library as cl
    from splink import DuckDBAPI, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    lf, rf = splink_frames(records, vectors, comparators, candidates, left, right)
    comparisons = []
    for field, kind in comparators.items():
        if kind in ("text", "name"):
            comparisons.append(cl.CustomComparison(**_jaccard(field, TEXT_CUTS)))
        elif kind == "code":
            comparisons.append(cl.ArrayIntersectAtSizes(field, [1]))
        elif kind == "number":
            comparisons.append(cl.CustomComparison(**_relative(field)))
        else:
            comparisons.append(cl.ExactMatch(field))
    comparisons.append(cl.CosineSimilarityAtThresholds("embedding", list(COSINE_CUTS)))
    blocking = block_on("pair_tokens", arrays_to_explode=["pair_tokens"])
    prior = {}
    if one_partner_prior:  # λ over all pairs if every record of the smaller side had one partner
        prior = {"probability_two_random_records_match": min(len(lf), len(rf)) / (len(lf) * len(rf))}
    settings = SettingsCreator(link_type="link_only", comparisons=comparisons,
                               blocking_rules_to_generate_predictions=[blocking],
                               retain_intermediate_calculation_columns=False, **prior)
    db = DuckDBAPI()
    inputs = [db.register(lf, dataset_display_name=left), db.register(rf, dataset_display_name=right)]
    linker = splink.Linker(inputs, settings)
    linker.training.estimate_u_using_random_sampling(max_pairs=RANDOM_PAIRS, seed=SEED)
    # EM cannot use an exploding rule: the same pairs by a (cartesian, DuckDB-fast) join condition
    linker.training.estimate_parameters_using_expectation_maximisation(
        "list_has_any(l.pair_tokens, r.pair_tokens)",
        fix_probability_two_random_records_match=one_partner_prior,
        populate_probability_two_random_records_match_from_trained_values=not one_partner_prior)
    predicted = linker.inference.predict().as_pandas_dataframe()
    seconds = time.perf_counter() - t0
    fwd = predicted["source_dataset_l"] == left
    pairs = pd.DataFrame({
        "left": np.where(fwd, predicted["unique_id_l"], predicted["unique_id_r"]).astype(str),
        "right": np.where(fwd, predicted["unique_id_r"], predicted["unique_id_l"]).astype(str),
        "p": predicted["match_probability"].to_numpy(dtype=np.float64),
    })
    return {"pairs": pairs, "seconds": seconds, "scored": len(predicted)}


def splink_decisions(pairs: pd.DataFrame) -> dict[str, set]:
    """Splink's own links (probability >= 0.5) and the one-to-one links over the same scores."""
    own = pairs[pairs["p"] >= 0.5]
    li, lnames = pd.factorize(pairs["left"])
    ri, rnames = pd.factorize(pairs["right"])
    chosen = assign(li, ri, pairs["p"].to_numpy(), 0.5)
    return {"splink": set(zip(own["left"], own["right"], strict=True)),
            "splink_one_to_one": set(zip(lnames[li[chosen]], rnames[ri[chosen]], strict=True))}
