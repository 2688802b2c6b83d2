"""Checks on an embedding table and its ANN index, computed from the Parquet file.

Vector integrity is streamed batch by batch; drift and recall work on samples so their
cost does not grow with the table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from jammi.embedding.vectors import vectors_of
from jammi.quality.outcome import MAX_EXAMPLES, CheckOutcome
from jammi.spec.project import IndexSpec
from jammi.tables.index import VersionIndex
from jammi.tables.parity import SOURCE_TABLE_PARITY
from jammi.tables.versions import Version, read_current

DIMENSIONS = "dimensions"
FINITE_VALUES = "finite_values"
UNIT_NORM = "unit_norm"
NO_ZERO_VECTORS = "no_zero_vectors"
ROW_COUNT = "row_count"
ROW_DROP = "row_count_drop"
EMBEDDING_DRIFT = "embedding_drift"
ANN_RECALL = "ann_recall_at_10"

TABLE_CHECKS = (DIMENSIONS, FINITE_VALUES, UNIT_NORM, NO_ZERO_VECTORS, ROW_COUNT, ROW_DROP,
                EMBEDDING_DRIFT, SOURCE_TABLE_PARITY)
NORM_TOLERANCE = 1e-4
READ_BATCH = 8192


def vector_integrity(parquet: Path, dimensions: int) -> list[CheckOutcome]:
    """Declared dimension, finite values, norms 1 ± 1e-4, no zero vectors."""
    pf = pq.ParquetFile(parquet)
    vtype = pf.schema_arrow.field("vector").type
    actual = getattr(vtype, "list_size", None)
    dims_ok = actual == dimensions
    out = [CheckOutcome(DIMENSIONS, dims_ok, "error", float(actual or 0), float(dimensions),
                        f"vector width {actual}, declared {dimensions}")]
    if not dims_ok:
        return out
    rows = non_finite = off_norm = zero = 0
    bad_finite: list[str] = []
    bad_norm: list[dict] = []
    bad_zero: list[str] = []
    worst = 0.0
    for batch in pf.iter_batches(batch_size=READ_BATCH, columns=["_row_id", "vector"]):
        vecs = vectors_of(batch.column("vector"), dimensions)
        ids = batch.column("_row_id").to_pylist()
        finite = np.isfinite(vecs).all(axis=1)
        norms = np.linalg.norm(np.where(np.isfinite(vecs), vecs, 0.0), axis=1)
        is_zero = finite & (norms == 0.0)
        dev = np.abs(norms - 1.0)
        measurable = finite & ~is_zero  # zero and non-finite vectors have checks of their own
        bad = measurable & (dev > NORM_TOLERANCE)
        rows += len(vecs)
        non_finite += int((~finite).sum())
        zero += int(is_zero.sum())
        off_norm += int(bad.sum())
        if measurable.any():
            worst = max(worst, float(dev[measurable].max()))
        bad_finite += [ids[i] for i in np.flatnonzero(~finite)[: MAX_EXAMPLES - len(bad_finite)]]
        bad_zero += [ids[i] for i in np.flatnonzero(is_zero)[: MAX_EXAMPLES - len(bad_zero)]]
        bad_norm += [{"row": ids[i], "norm": float(norms[i])}
                     for i in np.flatnonzero(bad)[: MAX_EXAMPLES - len(bad_norm)]]
    out.append(CheckOutcome(FINITE_VALUES, non_finite == 0, "error", float(non_finite), 0.0,
                            f"{non_finite} of {rows} vectors hold NaN or infinite values", bad_finite))
    out.append(CheckOutcome(UNIT_NORM, off_norm == 0, "error", worst, NORM_TOLERANCE,
                            f"largest |norm - 1| is {worst:.2e}; {off_norm} of {rows} vectors off",
                            bad_norm))
    out.append(CheckOutcome(NO_ZERO_VECTORS, zero == 0, "error", float(zero), 0.0,
                            f"{zero} of {rows} vectors are all zeros", bad_zero))
    return out


def vector_integrity_skipped(dimensions: int) -> list[CheckOutcome]:
    """A refresh that wrote no new vectors: the integrity checks hold for what it kept."""
    note = "no new vectors in this version; kept vectors passed when they were written"
    return [CheckOutcome(name, True, "error", None, None, note)
            for name in (DIMENSIONS, FINITE_VALUES, UNIT_NORM, NO_ZERO_VECTORS)]


def drift_skipped(severity: str) -> CheckOutcome:
    return CheckOutcome(EMBEDDING_DRIFT, True, severity, 0.0, None,
                        "refresh: unchanged rows keep their vectors; drift is measured on a rebuild")


def row_count(table_rows: int, validated_rows: int, skipped: int, failed: int) -> CheckOutcome:
    expected = validated_rows - skipped - failed
    return CheckOutcome(
        ROW_COUNT, table_rows == expected, "error", float(table_rows), float(expected),
        f"table has {table_rows} rows; validated {validated_rows} - skipped {skipped} "
        f"- failed {failed} = {expected}",
    )


def row_drop(rows: int, serving: int, min_ratio: float) -> CheckOutcome:
    """An empty or truncated export must not replace the serving table: refuse a new table or
    version with fewer than `min_ratio` of the serving rows, or none when the serving one has some."""
    floor = min_ratio * serving
    passed = serving == 0 or (rows >= floor and (rows > 0 or min_ratio == 0))
    return CheckOutcome(
        ROW_DROP, passed, "error", float(rows), floor,
        f"{rows} rows against {serving} serving (at least {min_ratio:.0%} required: "
        "quality.min_row_ratio)" if serving else "nothing serving yet")


def _sample(parquet: Path, dimensions: int, size: int, seed: int) -> np.ndarray:
    table = pq.read_table(parquet, columns=["vector"])
    n = table.num_rows
    if n == 0:
        return np.zeros((0, dimensions), dtype=np.float32)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))
    return vectors_of(table.column("vector").take(idx), dimensions)


def embedding_drift(current: Path, previous: Path | None, dimensions: int, max_centroid_shift: float,
                    severity: str = "warn", sample: int = 2000, seed: int = 0) -> CheckOutcome:
    """Centroid cosine shift and mean nearest-neighbour distance against the previous table."""
    if previous is None or not previous.exists():
        return CheckOutcome(EMBEDDING_DRIFT, True, severity, 0.0, max_centroid_shift,
                            "no previous table of this source and model to compare")
    cur, prev = _sample(current, dimensions, sample, seed), _sample(previous, dimensions, sample, seed)
    if len(cur) == 0 or len(prev) == 0:
        return CheckOutcome(EMBEDDING_DRIFT, True, severity, 0.0, max_centroid_shift,
                            "one of the tables is empty: nothing to compare")
    c1, c0 = cur.mean(axis=0), prev.mean(axis=0)
    denom = float(np.linalg.norm(c1) * np.linalg.norm(c0))
    shift = 1.0 - float(c1 @ c0) / denom if denom else 1.0
    nn = 1.0 - (cur @ prev.T).max(axis=1)
    mean_nn = float(nn.mean())
    return CheckOutcome(
        EMBEDDING_DRIFT, shift <= max_centroid_shift, severity, shift, max_centroid_shift,
        f"centroid cosine shift {shift:.4f}; mean nearest-neighbour distance {mean_nn:.4f}",
        details={"centroid_shift": shift, "mean_nn_distance": mean_nn,
                 "sample_current": len(cur), "sample_previous": len(prev)},
    )


def ann_recall(tables_dir: Path, version: Version, dimensions: int, spec: IndexSpec,
               min_recall: float = 0.95, queries: int = 200, k: int = 10, seed: int = 0) -> CheckOutcome:
    """Recall@k of search through the version's HNSW sidecars (deletions applied) against exact
    search over its current rows, with sampled rows as queries."""
    if version.rows == 0:
        return CheckOutcome(ANN_RECALL, True, "error", 1.0, min_recall, "empty table: nothing to index")
    index = VersionIndex(tables_dir, version, dimensions, spec)
    if index.problems:
        segment, problem = next(iter(index.problems.items()))
        return CheckOutcome(ANN_RECALL, False, "error", 0.0, min_recall,
                            f"index unusable for {len(index.problems)} segment(s), e.g. {segment}: {problem}")
    table = read_current(tables_dir, version, ["vector"])
    ids = table.column("_row_id").to_pylist()
    vecs = vectors_of(table.column("vector"), dimensions)
    kk = min(k, len(ids))
    picks = np.random.default_rng(seed).choice(len(ids), size=min(queries, len(ids)), replace=False)
    exact = np.argpartition(-(vecs[picks] @ vecs.T), kk - 1, axis=1)[:, :kk]
    hits = []
    for row, pick in enumerate(picks):
        found = {r for r, _ in index.search(vecs[pick], kk)}
        hits.append(len(found & {ids[j] for j in exact[row]}))
    recall = float(np.mean(hits)) / kk
    worst = np.argsort(hits)[:MAX_EXAMPLES]
    return CheckOutcome(
        ANN_RECALL, recall >= min_recall, "error", recall, min_recall,
        f"recall@{kk} {recall:.3f} over {len(picks)} sampled queries, {len(version.segments)} segment(s)",
        examples=[{"query_row": ids[picks[i]], "hits": int(hits[i])} for i in worst if hits[i] < kk],
        details={"queries": len(picks), "k": kk, "segments": len(version.segments)},
    )
