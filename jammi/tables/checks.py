"""Checks on an embedding table and its ANN index, computed from the Parquet file.

Vector integrity is streamed batch by batch; drift compares samples read by position, and
recall searches with a sample of rows and streams the exact search batch by batch, so their
memory does not grow with the table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jammi import store
from jammi.embedding.vectors import vectors_of
from jammi.quality.outcome import MAX_EXAMPLES, CheckOutcome
from jammi.spec.project import IndexSpec
from jammi.store import Location
from jammi.tables.arrays import int64s, take
from jammi.tables.index import VersionIndex
from jammi.tables.parity import SOURCE_TABLE_PARITY
from jammi.tables.versions import Version, deleted_by_segment

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
# An ANN hit counts toward recall when its exact similarity to the query is at least the exact
# k-th best similarity less this slack. Rows with equal vectors (one text under many keys) tie,
# and the exact top-k picks among ties arbitrarily, so counting row ids calls a right answer a
# miss; equal vectors scored in different matrix products differ by float32 rounding (about
# 1e-7 for unit vectors of a few hundred dimensions), which the slack absorbs while staying far
# below the gaps between distinct neighbours that recall is meant to tell apart.
TIE_EPS = 1e-5


def _batches(pf: pq.ParquetFile, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The file's record batches, one row group at a time: one `iter_batches` over many row
    groups keeps what it decoded allocated as it goes (700 MB by the end of a 770 MB vector
    column in ten groups, pyarrow 26), while a reader per group holds about one decoded group."""
    for group in range(pf.metadata.num_row_groups):
        yield from pf.iter_batches(batch_size=READ_BATCH, row_groups=[group], columns=columns)


def vector_integrity(parquet: Location, dimensions: int) -> list[CheckOutcome]:
    """Declared dimension, finite values, norms 1 ± 1e-4, no zero vectors."""
    return segments_integrity([parquet], dimensions)


def segments_integrity(files: list[Location], dimensions: int) -> list[CheckOutcome]:
    """`vector_integrity` over every segment file of a table, streamed one row group at a time."""
    opened = [store.parquet_file(f) for f in files]
    widths = {getattr(pf.schema_arrow.field("vector").type, "list_size", None) for pf in opened}
    actual = next((w for w in widths if w != dimensions), dimensions) if opened else dimensions
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
    for batch in (b for pf in opened for b in _batches(pf, ["_row_id", "vector"])):
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
    pa.default_memory_pool().release_unused()  # the pool keeps freed batches otherwise
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


def _read_at(pf: pq.ParquetFile, positions: np.ndarray, columns: list[str]) -> pa.Table:
    """The rows at `positions` (sorted, distinct) of a Parquet file, in that order: only the row
    groups holding them are read, one group at a time, so memory is about one decoded group
    (a vector column is decoded a whole group at once) plus what is taken."""
    meta = pf.metadata
    starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
    parts: list[pa.RecordBatch] = []
    for group in np.unique(np.searchsorted(starts, positions, side="right") - 1).tolist():
        base = int(starts[group])
        last = int(positions[np.searchsorted(positions, starts[group + 1]) - 1])
        for batch in pf.iter_batches(batch_size=READ_BATCH, row_groups=[group], columns=columns):
            lo, hi = np.searchsorted(positions, [base, base + batch.num_rows])
            if hi > lo:
                parts.append(take(batch, int64s(positions[lo:hi] - base)))
            base += batch.num_rows
            if base > last:  # the group's last wanted row is read: skip the rest of the group
                break
    schema = pa.schema([pf.schema_arrow.field(c) for c in columns])
    return pa.Table.from_batches(parts, schema=schema)


def _sample(parquet: Location, dimensions: int, size: int, seed: int) -> np.ndarray:
    """Up to `size` rows of the file's vectors, drawn at random (the same rows for a seed), read
    from only the row groups that hold them."""
    pf = store.parquet_file(parquet)
    n = pf.metadata.num_rows
    if n == 0:
        return np.zeros((0, dimensions), dtype=np.float32)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))
    return vectors_of(_read_at(pf, idx, ["vector"]).column("vector"), dimensions)


def embedding_drift(current: Location, previous: Location | None, dimensions: int, max_centroid_shift: float,
                    severity: str = "warn", sample: int = 2000, seed: int = 0) -> CheckOutcome:
    """Centroid cosine shift and mean nearest-neighbour distance against the previous table."""
    if previous is None or not store.exists(previous):
        return CheckOutcome(EMBEDDING_DRIFT, True, severity, 0.0, max_centroid_shift,
                            "no previous table of this source and model to compare")
    cur = _sample(current, dimensions, sample, seed)
    try:
        prev = _sample(previous, dimensions, sample, seed)
    except (OSError, pa.ArrowException) as err:  # a damaged previous table: the rebuild goes on
        return CheckOutcome(EMBEDDING_DRIFT, True, severity, 0.0, max_centroid_shift,
                            f"previous table {store.name_of(previous)} cannot be read "
                            f"({str(err).splitlines()[0]}): nothing to compare")
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


def _sample_segment(pf: pq.ParquetFile, count: int, gone: set[str], rng: np.random.Generator
                    ) -> pa.Table:
    """`count` current rows of one segment (`_row_id`, `vector`), uniformly at random: positions
    are drawn without replacement and the first `count` not in `gone` (in draw order) are kept.
    A draw holding too few current rows is redone twice as large, up to the whole segment; the
    row ids are read first, so vectors are read for the kept rows only."""
    rows = pf.metadata.num_rows
    live = max(1, rows - len(gone))
    draw = min(rows, count if not gone else int(count * rows / live * 1.25) + 16)
    while True:
        order = rng.choice(rows, size=draw, replace=False)
        if gone:
            at = np.sort(order)
            ids = _read_at(pf, at, ["_row_id"]).column("_row_id").to_pylist()
            current = np.array([r not in gone for r in ids], dtype=bool)
            order = order[current[np.searchsorted(at, order)]]
        if len(order) >= count or draw == rows:
            break
        draw = min(rows, draw * 2)
    return _read_at(pf, np.sort(order[:count]), ["_row_id", "vector"])


def _sample_current(tables_dir: Location, version: Version, deleted: dict[str, set[str]], size: int,
                    rng: np.random.Generator) -> pa.Table:
    """Up to `size` of the version's current rows (`_row_id`, `vector`), uniformly at random,
    without reading the table: each segment's share is a hypergeometric draw over the segments'
    current row counts, and only the row groups holding the drawn rows are read."""
    live = [max(0, ref.rows - len(deleted.get(ref.file, ()))) for ref in version.segments]
    shares = rng.multivariate_hypergeometric(live, min(size, sum(live))).tolist()
    parts = [_sample_segment(store.parquet_file(store.join(tables_dir, ref.file)), share,
                             deleted.get(ref.file, set()), rng)
             for ref, share in zip(version.segments, shares, strict=True) if share]
    if not parts:
        return pa.table({"_row_id": pa.array([], pa.string())})
    return pa.concat_tables(parts)


def _exact_similarities(tables_dir: Location, version: Version, deleted: dict[str, set[str]],
                        queries: np.ndarray, hits: list[list[str]], k: int, dimensions: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the version's current rows, segment by segment in record batches: each
    query's exact k-th best similarity (dot product: the vectors are unit length, so it ranks as
    cos, ip and l2sq do), and the exact similarity of each of its `hits` (queries x k, -inf
    where a slot is empty or its row is not current). Memory is O(queries x batch), never
    O(table): a running top-k per query is kept, not the scores."""
    top = np.full((len(queries), k), -np.inf, dtype=np.float32)
    hit_sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
    slots: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for q, found in enumerate(hits):
        for slot, row in enumerate(found[:k]):
            slots[row].append((q, slot))
    for ref in version.segments:
        gone = deleted.get(ref.file, set())
        pf = store.parquet_file(store.join(tables_dir, ref.file))
        for batch in _batches(pf, ["_row_id", "vector"]):
            ids = batch.column("_row_id").to_pylist()
            vecs = vectors_of(batch.column("vector"), dimensions)
            if gone:
                keep = [i for i, r in enumerate(ids) if r not in gone]
                ids, vecs = [ids[i] for i in keep], vecs[keep]
            if not ids:
                continue
            scores = queries @ vecs.T
            both = np.concatenate([top, scores], axis=1)
            top = np.partition(both, both.shape[1] - k, axis=1)[:, -k:]
            for j in (j for j, r in enumerate(ids) if r in slots):
                for q, slot in slots[ids[j]]:
                    hit_sims[q, slot] = scores[q, j]
    return top.min(axis=1), hit_sims


def ann_recall(tables_dir: Location, version: Version, dimensions: int, spec: IndexSpec,
               min_recall: float = 0.95, queries: int = 200, k: int = 10, seed: int = 0) -> CheckOutcome:
    """Recall@k of search through the version's HNSW sidecars (deletions applied) against exact
    search over its current rows, with up to `queries` sampled current rows as queries. A hit
    counts when its exact similarity is within `TIE_EPS` of the exact k-th best (rows with equal
    vectors tie, and either is a right answer). Memory stays O(queries x batch): the queries
    are read by position, the exact top-k streamed (`_exact_similarities`)."""
    if version.rows == 0:
        return CheckOutcome(ANN_RECALL, True, "error", 1.0, min_recall, "empty table: nothing to index")
    index = VersionIndex(tables_dir, version, dimensions, spec)
    if index.problems:
        segment, problem = next(iter(index.problems.items()))
        return CheckOutcome(ANN_RECALL, False, "error", 0.0, min_recall,
                            f"index unusable for {len(index.problems)} segment(s), e.g. {segment}: {problem}")
    kk = min(k, version.rows)
    sample = _sample_current(tables_dir, version, index.deleted, queries, np.random.default_rng(seed))
    if sample.num_rows == 0:
        return CheckOutcome(ANN_RECALL, True, "error", 1.0, min_recall, "no current rows to query")
    ids = sample.column("_row_id").to_pylist()
    vecs = vectors_of(sample.column("vector"), dimensions)
    found = [list(dict.fromkeys(row for row, _ in hits)) for hits in index.search_many(vecs, kk)]
    kth, hit_sims = _exact_similarities(tables_dir, version, index.deleted, vecs, found, kk, dimensions)
    pa.default_memory_pool().release_unused()
    hits = (hit_sims >= kth[:, None] - TIE_EPS).sum(axis=1)
    recall = float(np.mean(hits)) / kk
    worst = np.argsort(hits, kind="stable")[:MAX_EXAMPLES]
    return CheckOutcome(
        ANN_RECALL, recall >= min_recall, "error", recall, min_recall,
        f"recall@{kk} {recall:.3f} over {len(ids)} sampled queries, {len(version.segments)} segment(s)",
        examples=[{"query_row": ids[i], "hits": int(hits[i])} for i in worst if hits[i] < kk],
        details={"queries": len(ids), "k": kk, "segments": len(version.segments),
                 "recall": f"hits within {TIE_EPS:g} of the exact k-th similarity, over k"},
    )


def ann_recall_by_segment(tables_dir: Location, version: Version, dimensions: int, spec: IndexSpec,
                          known: dict[str, dict], states: dict[str, list], min_recall: float = 0.95,
                          queries: int = 200, k: int = 10) -> tuple[CheckOutcome, dict[str, dict]]:
    """Recall@k of the version's index, segment by segment: search merges each segment's own
    top-k, so the merged answer is exact when every segment's is. A segment is measured once
    for the sidecar it has (`states`: segment file -> its sidecars' state); `known` holds what
    earlier runs measured, and a run measures only the segments whose sidecars are new, so its
    cost is what it indexed, not the table. Passes when every segment's recall does."""
    deleted = deleted_by_segment(tables_dir, version)
    measured: dict[str, dict] = {}
    fresh = 0
    for ref in version.segments:
        before = known.get(ref.file)
        if before is not None and before.get("state") == states.get(ref.file):
            measured[ref.file] = before
            continue
        one = Version(version.table_name, version.version, (ref,), version.deletes,
                      rows=ref.rows - len(deleted.get(ref.file, ())))
        out = ann_recall(tables_dir, one, dimensions, spec, min_recall, queries, k)
        measured[ref.file] = {"state": states.get(ref.file), "recall": float(out.statistic or 0.0),
                              "passed": bool(out.passed), "description": out.description,
                              "examples": out.examples}
        fresh += 1
    if not measured:
        return CheckOutcome(ANN_RECALL, True, "error", 1.0, min_recall, "empty table: nothing to index"), {}
    worst_file = min(measured, key=lambda f: measured[f]["recall"])
    worst = measured[worst_file]
    passed = all(m["passed"] for m in measured.values())
    kk = min(k, max(1, version.rows))
    outcome = CheckOutcome(
        ANN_RECALL, passed, "error", worst["recall"], min_recall,
        f"recall@{kk} {worst['recall']:.3f} in the worst of {len(measured)} segment(s) ({worst_file}: "
        f"{worst['description']}); {fresh} measured this run, the others unchanged since measured",
        examples=worst["examples"],
        details={"segments": len(measured), "measured_now": fresh, "k": kk,
                 "recall": f"hits within {TIE_EPS:g} of the exact k-th similarity, over k, per segment",
                 "by_segment": {f: m["recall"] for f, m in measured.items()}})
    return outcome, measured
