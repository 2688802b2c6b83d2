"""Building one embedding table from a validated frame on disk, record batch by record
batch, under the catalog's building -> ready | failed protocol."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from jammi import store
from jammi.embedding.batching import GROW_AFTER, BatchSizer
from jammi.embedding.encode import encode_window
from jammi.embedding.model import Encoder
from jammi.embedding.stream import Plan, encode_sorted
from jammi.embedding.texts import TEXT_SEPARATOR, compose_batch, compose_texts, content_hash
from jammi.embedding.vectors import to_vector_array
from jammi.errors import ArtifactError, SourceError
from jammi.quality.outcome import blocking_failures, outcome_json
from jammi.spec.chunking import CHUNK_DOC
from jammi.spec.project import PipelineSpec, SourceSpec
from jammi.storage import tmp_path
from jammi.store import Location
from jammi.tables.catalog import (
    STATUS_BUILDING,
    STATUS_FAILED,
    STATUS_READY,
    Catalog,
    now,
)
from jammi.tables.contract import (
    DOC_ID_COLUMN,
    PARTITION_COLUMN,
    new_table_name,
    sidecar,
    table_schema,
    write_manifest,
)
from jammi.tables.cost import run_usage
from jammi.tables.generation import generation_of, source_schema_version
from jammi.tables.segments import SEGMENT_ROWS, SegmentWriter
from jammi.tables.versions import OUTCOME_REBUILT, Counts, FileRef, Version, version_stem

WINDOW_ROWS = 65536  # rows read from the frame per record batch
ERROR_SAMPLES = 20  # rows whose text could not be embedded kept, with their error, per run
Progress = Callable[[str], None]
Verify = Callable[["EmbedStats"], list]


@dataclass
class EmbedStats:
    table_name: str
    parquet_path: Path
    model_id: str
    dimensions: int
    rows_in: int = 0
    rows_embedded: int = 0
    rows_skipped: int = 0
    rows_failed: int = 0
    rows_truncated: int = 0
    seconds: float = 0.0
    batch_size_start: int = 0
    batch_size_end: int = 0
    oom_events: int = 0
    generation: str = ""
    rows_encoded: int = 0  # texts this run sent through the model (each distinct text once)
    rows_reused: int = 0  # rows that took the vector of a like text instead of encoding it
    table_rows: int = 0  # rows of the whole table (`rows_embedded` counts a partition's run's own)
    serving_rows: int = 0  # rows the run's scope (table, or partition) served before it
    counts: Counts = field(default_factory=Counts)  # what the refresh did (outcome, added...)
    segments: tuple[FileRef, ...] = ()  # a new table's segment files, the first at `parquet_path`
    version: int = 0
    outcomes: list = field(default_factory=list)
    blocked_by: list[str] = field(default_factory=list)
    # (row key, error) of the first rows whose text could not be embedded (a provider refused it)
    row_errors: list[tuple[str, str]] = field(default_factory=list)

    def row_error(self, key: str, error: str) -> None:
        if len(self.row_errors) < ERROR_SAMPLES:
            self.row_errors.append((key, error))

    @property
    def rows_per_second(self) -> float:
        """Texts encoded per second of this run (0 for a refresh that encoded nothing)."""
        return self.rows_encoded / self.seconds if self.seconds else 0.0


def count_truncated(encoder: Encoder, texts: list[str]) -> int:
    """Texts longer than the model window; only long strings are tokenized (a word-piece
    token covers at least one character, so shorter strings always fit)."""
    limit = encoder.max_seq_length
    long = [t for t in texts if len(t) > limit - 2]
    if not long:
        return 0
    return sum(1 for n in encoder.token_counts(long) if n > limit)


def source_schema(spec: SourceSpec) -> dict:
    return {"key": spec.key, "columns": {c: s.type for c, s in spec.columns.items()}}


def _manifest(stats: EmbedStats, pipeline: str, pipe: PipelineSpec, src_name: str,
              src: SourceSpec, status: str) -> dict:
    return {
        "table_name": stats.table_name,
        "status": status,
        "source": src_name,
        "pipeline": pipeline,
        "model_id": stats.model_id,
        "dimensions": stats.dimensions,
        "count": stats.rows_embedded,
        "metric": pipe.index.metric,
        "backend": "usearch",
        "model_backend": pipe.backend,  # what ran the model (torch, onnx, onnx-int8, openvino)
        "provider": pipe.provider.identity if pipe.provider else None,  # or the service that embedded
        "index": pipe.index.model_dump(),
        "key_column": src.key,
        "text_spec": {"columns": pipe.embedded_columns, "separator": TEXT_SEPARATOR},
        "chunking": ({**pipe.chunking.model_dump(), "document_columns": pipe.text_columns}
                     if pipe.chunking else None),
        "source_schema": source_schema(src),
        "source_schema_version": source_schema_version(src),
        "generation": stats.generation,
        "rows_skipped": stats.rows_skipped,
        "rows_failed": stats.rows_failed,
        "rows_truncated": stats.rows_truncated,
        "updated_at": now().isoformat(),
    }


def build_embedding_table(
    *,
    catalog: Catalog,
    frame_file: Location,
    pipeline: str,
    pipe: PipelineSpec,
    source: str,
    src: SourceSpec,
    encoder: Encoder,
    progress: Progress | None = None,
    verify: Verify | None = None,
    full_token: str | None = None,
    rows: SourceRows | None = None,
) -> EmbedStats:
    """Embed the validated frame at `frame_file` into a new table; when whole, mark it ready
    and switch the pipeline's active pointer to it in one catalog transaction (blue/green).

    A failure marks the table failed, removes its partial files and re-raises; the
    pipeline's active table keeps serving search throughout, and stays active (ready, for
    rollback) after the switch. `verify` runs on the complete Parquet before the table is
    marked ready; when one of its outcomes is a failed error-severity check, the table is
    marked failed instead (files kept for inspection) and `stats.blocked_by` names the checks.
    `rows` are the frame's rows with text (keys, texts, hashes), read here when not given.
    """
    if not store.exists(frame_file):
        raise SourceError(
            f"source {source!r}: validated frame {frame_file} does not exist; "
            f"materialize validated_{source} first"
        )
    tables_dir = catalog.tables_dir
    try:
        store.make_dirs(tables_dir)
    except OSError as err:
        raise ArtifactError(f"artifact_dir {str(catalog.artifact_dir)!r} is not writable: {err}") from None
    taken = {t.table_name for t in catalog.tables(source=source)}
    name = new_table_name(tables_dir, source, encoder.model_id, taken)
    base = store.join(tables_dir, name)
    final = sidecar(base, ".parquet")
    stats = EmbedStats(name, final, encoder.model_id, encoder.dimensions, generation=generation_of(pipe, src))
    catalog.begin_table(
        {
            "table_name": name, "pipeline": pipeline, "source": source,
            "model_id": encoder.model_id, "text_columns": pipe.embedded_columns,
            "key_column": src.key, "dimensions": encoder.dimensions,
            "source_schema": source_schema(src), "parquet_path": final,
            "source_schema_version": source_schema_version(src), "text_separator": TEXT_SEPARATOR,
            "generation": stats.generation,
        }
    )
    write_manifest(base, _manifest(stats, pipeline, pipe, source, src, STATUS_BUILDING))
    try:
        rows = rows or source_rows(frame_file, src.key, pipe.embedded_columns, encoder.model_id,
                                   doc_column(pipe))
        _write(stats, rows, pipe, source, encoder, final, progress)
        stats.outcomes = verify(stats) if verify else []
        stats.blocked_by = [o.name for o in blocking_failures(stats.outcomes)]
        if stats.blocked_by:
            catalog.set_status(name, STATUS_FAILED, error=f"quality gate: {', '.join(stats.blocked_by)}",
                               **_counts(stats))
            return stats
        ready = _manifest(stats, pipeline, pipe, source, src, STATUS_READY)
        ready["checks"] = [outcome_json(o) for o in stats.outcomes]  # what recovery may trust
        ready["full_token"] = full_token  # the rebuild request this table answers (partitions share one)
        ready["segments"] = [ref.to_json() for ref in stats.segments]  # version 0, for recovery
        write_manifest(base, ready)
        stats.counts = Counts(added=stats.rows_embedded, rows_encoded=stats.rows_encoded,
                              outcome=OUTCOME_REBUILT, seconds=round(stats.seconds, 3),
                              usage=run_usage(encoder))
        first = Version(name, 0, stats.segments, rows=stats.rows_embedded,
                        counts=stats.counts)
        catalog.activate(name, first=first, **_counts(stats))
    except BaseException as err:
        leftover = [] if store.is_url(final) else [tmp_path(final)]
        for path in (*leftover, final, sidecar(base, ".manifest.json"),
                     *(store.join(tables_dir, ref.file) for ref in stats.segments[1:]),
                     *store.listdir(tables_dir, f".{name}.v00000-*.tmp")):
            store.delete(path)
        catalog.set_status(name, STATUS_FAILED, error=f"{type(err).__name__}: {err}"[:2000],
                           **_counts(stats))
        raise
    return stats


def _counts(stats: EmbedStats) -> dict:
    return {k: getattr(stats, k) for k in ("rows_embedded", "rows_skipped", "rows_failed", "rows_truncated")}


@dataclass
class SourceRows:
    """The validated rows that have text: key and content hash, in frame order, and the text of
    each distinct content hash (a text repeated under many keys is held once)."""

    keys: list[str]
    hashes: list[str]
    text_of: dict[str, str]
    skipped: int
    doc_ids: list[str] | None = None  # a chunked pipeline's: each chunk's document key
    partitions: list[str] | None = None  # a partitioned source's: each row's partition
    _arrow: tuple[pa.Array, pa.Array] | None = field(default=None, repr=False, compare=False)

    def arrow(self) -> tuple[pa.Array, pa.Array]:
        """Keys and content hashes as Arrow strings, built once (the diff and the parity check
        both compare them with the table's)."""
        if self._arrow is None or len(self._arrow[0]) != len(self.keys):
            self._arrow = (pa.array(self.keys, pa.string()), pa.array(self.hashes, pa.string()))
        return self._arrow

    def text(self, i: int) -> str:
        return self.text_of[self.hashes[i]]

    def take(self, picked: list[int]) -> tuple[list[str], list[str], list[str] | None, list[str] | None]:
        """Keys, texts, document keys and partitions of the rows at `picked`."""
        return ([self.keys[i] for i in picked], [self.text(i) for i in picked],
                None if self.doc_ids is None else [self.doc_ids[i] for i in picked],
                None if self.partitions is None else [self.partitions[i] for i in picked])


def source_rows(frame_file: Location, key: str, text_columns: list[str], model_id: str,
                doc_column: str | None = None) -> SourceRows:
    """The frame's rows with text, read record batch by record batch (only the columns needed)."""
    rows = SourceRows([], [], {}, 0, None if doc_column is None else [])
    wanted = list(dict.fromkeys([key, *text_columns, *([doc_column] if doc_column else [])]))
    digest_of: dict[str, str] = {}  # text -> content hash: a repeated text is hashed once
    for batch in store.parquet_file(frame_file).iter_batches(batch_size=WINDOW_ROWS, columns=wanted):
        k, t, s, d = keyed_batch(batch, key, text_columns, doc_column)
        hashes = []
        for text in t:
            digest = digest_of.get(text)
            if digest is None:
                digest = digest_of[text] = content_hash(model_id, text)
                rows.text_of.setdefault(digest, text)
            hashes.append(digest)
        rows.keys += k
        rows.hashes += hashes
        rows.skipped += s
        if rows.doc_ids is not None:
            rows.doc_ids += d
    return rows


def _strings(column: pa.Array | pa.ChunkedArray) -> list[str]:
    """A key column's values as the strings `Series.astype(str)` gives: read through Arrow
    for string and integer columns, through pandas for any other type."""
    if column.null_count == 0 and (pa.types.is_string(column.type) or pa.types.is_large_string(
            column.type) or pa.types.is_integer(column.type)):
        return column.cast(pa.string()).to_pylist()
    return column.to_pandas().astype(str).tolist()


def keyed_batch(batch: pa.RecordBatch, key: str, text_columns: list[str], doc_column: str | None = None
                ) -> tuple[list[str], list[str], int, list[str] | None]:
    """`keyed_rows` of an Arrow record batch, without building a pandas frame."""
    texts = compose_batch(batch, text_columns)
    keep = [i for i, t in enumerate(texts) if t is not None]
    keys = _strings(batch.column(key))
    docs = None if doc_column is None else _strings(batch.column(doc_column))
    if len(keep) == len(texts):
        return keys, texts, 0, docs
    return ([keys[i] for i in keep], [texts[i] for i in keep], len(texts) - len(keep),
            None if docs is None else [docs[i] for i in keep])


def partition_rows(files: list[tuple[str, Location]], key: str, text_columns: list[str], model_id: str,
                   doc_column: str | None = None) -> SourceRows:
    """The rows with text of a partitioned frame's (partition, file) pairs, in partition order,
    each with its partition; a key in several partitions keeps its row from the latest one."""
    parts = [(p, source_rows(f, key, text_columns, model_id, doc_column)) for p, f in files]
    last: dict[str, tuple[int, int]] = {}
    for n, (_, rows) in enumerate(parts):
        for i, k in enumerate(rows.keys):
            last[k] = (n, i)
    out = SourceRows([], [], {}, sum(r.skipped for _, r in parts), None if doc_column is None else [], [])
    for n, (partition, rows) in enumerate(parts):
        picked = [i for i, k in enumerate(rows.keys) if last[k] == (n, i)]
        keys, _, docs, _ = rows.take(picked)
        out.keys += keys
        out.text_of.update(rows.text_of)
        out.hashes += [rows.hashes[i] for i in picked]
        out.partitions += [partition] * len(picked)
        if out.doc_ids is not None:
            out.doc_ids += docs
    return out


def distinct(hashes: list[str]) -> tuple[list[int], np.ndarray]:
    """The first row of each distinct hash, and for every row the index of its distinct text."""
    first: dict[str, int] = {}
    of_row = np.fromiter((first.setdefault(h, len(first)) for h in hashes), dtype=np.int64,
                         count=len(hashes))
    rows = np.full(len(first), -1, dtype=np.int64)
    rows[of_row[::-1]] = np.arange(len(of_row) - 1, -1, -1)  # the last write per text is its first row
    return rows.tolist(), of_row


def contract_rows(model_id: str, dimensions: int, source: str, keys: list[str], hashes: list[str],
                  vectors: np.ndarray, doc_ids: list[str] | None = None,
                  partitions: list[str] | None = None) -> pa.Table:
    """Contract rows (and `_doc_id`, when `doc_ids` are given: chunks; `_partition`, when
    `partitions` are: a partitioned source's)."""
    n = len(keys)
    columns = {
        "_row_id": pa.array(keys, pa.string()),
        "_source_id": pa.array([source] * n, pa.string()),
        "_model_id": pa.array([model_id] * n, pa.string()),
        "vector": to_vector_array(vectors.reshape(n, dimensions)),
        "_content_hash": pa.array(hashes, pa.string()),
    }
    if doc_ids is not None:
        columns[DOC_ID_COLUMN] = pa.array(doc_ids, pa.string())
    if partitions is not None:
        columns[PARTITION_COLUMN] = pa.array(partitions, pa.string())
    return pa.table(columns, schema=table_schema(dimensions, doc_ids is not None, partitions is not None))


def encode_rows(encoder: Encoder, source: str, keys: list[str], texts: list[str], sizer: BatchSizer,
                stats: EmbedStats, doc_ids: list[str] | None = None,
                known: dict[str, np.ndarray] | None = None, partitions: list[str] | None = None) -> pa.Table:
    """Contract rows for `keys` and their non-empty `texts` (and `_doc_id`, when `doc_ids` are
    given: chunks); each distinct text is encoded once, and a text whose hash is in `known`
    (vectors the table already holds) not at all. A text that fails even alone is counted in
    `stats.rows_failed` and left out."""
    hashes = [content_hash(encoder.model_id, t) for t in texts]
    known = known or {}
    firsts, of_row = distinct(hashes)
    todo = [j for j, i in enumerate(firsts) if hashes[i] not in known]
    todo_texts = [texts[firsts[j]] for j in todo]
    vectors = np.zeros((len(firsts), stats.dimensions), dtype=np.float32)
    ok = np.ones(len(firsts), dtype=bool)
    for j, i in enumerate(firsts):
        if hashes[i] in known:
            vectors[j] = known[hashes[i]]
    encoded = 0
    if todo:  # only now may the model load
        stats.rows_truncated += count_truncated(encoder, todo_texts)
        window = encode_window(encoder, todo_texts, sizer)
        vectors[todo] = window.vectors
        ok[todo] = [e is None for e in window.errors]
        encoded = int(ok[todo].sum())
        for j, error in zip(todo, window.errors, strict=True):
            if error:
                stats.row_error(keys[firsts[j]], error)
    stats.rows_encoded += encoded
    good = ok[of_row]
    stats.rows_failed += int((~good).sum())
    stats.rows_reused += int(good.sum()) - encoded
    keep = np.flatnonzero(good).tolist()
    return contract_rows(encoder.model_id, stats.dimensions, source, [keys[i] for i in keep],
                         [hashes[i] for i in keep], vectors[of_row[keep]],
                         None if doc_ids is None else [doc_ids[i] for i in keep],
                         None if partitions is None else [partitions[i] for i in keep])


def keyed_texts(frame: pd.DataFrame, key: str, text_columns: list[str]) -> tuple[list[str], list[str], int]:
    """(keys, texts) of the rows with text, and how many rows have none (skipped)."""
    keys, texts, skipped, _ = keyed_rows(frame, key, text_columns)
    return keys, texts, skipped


def keyed_rows(frame: pd.DataFrame, key: str, text_columns: list[str], doc_column: str | None = None
               ) -> tuple[list[str], list[str], int, list[str] | None]:
    """`keyed_texts`, and the `doc_column` values (chunks' document keys) of the same rows."""
    texts = compose_texts(frame, text_columns)
    keep = [i for i, t in enumerate(texts) if t is not None]
    keys = frame[key].astype(str).tolist()
    docs = None if doc_column is None else frame[doc_column].astype(str).tolist()
    return ([keys[i] for i in keep], [texts[i] for i in keep], len(texts) - len(keep),
            None if docs is None else [docs[i] for i in keep])


def doc_column(pipe: PipelineSpec) -> str | None:
    """The input frame's column that becomes `_doc_id`: a chunked pipeline's `doc_id`."""
    return CHUNK_DOC if pipe.chunking else None


def _write(stats: EmbedStats, rows: SourceRows, pipe: PipelineSpec, source: str, encoder: Encoder,
           final: Location, progress: Progress | None) -> None:
    """Encode each distinct text once, longest first across the whole table, and write each chunk's
    rows (every row whose text is in the chunk) from a second thread while the next chunk encodes."""
    t0 = time.perf_counter()
    stats.rows_in += len(rows.keys) + rows.skipped
    stats.rows_skipped += rows.skipped
    firsts, of_row = distinct(rows.hashes)
    by_text = np.argsort(of_row, kind="stable")  # rows grouped by their distinct text
    bounds = np.searchsorted(of_row[by_text], np.arange(len(firsts) + 1))
    auto = pipe.batch_size == "auto"
    sizer = BatchSizer(size=32 if auto else pipe.batch_size, grow_after=GROW_AFTER)
    plan = Plan()
    pending: Future | None = None
    chunks, parted = rows.doc_ids is not None, rows.partitions is not None
    stem = store.name_of(final).removesuffix(".parquet")
    later = (store.join(store.parent_of(final), f"{version_stem(stem, 0)}.parquet") for _ in iter(int, 1))
    schema = table_schema(encoder.dimensions, chunks, parted)
    segments = SegmentWriter(itertools.chain([final], later), schema, SEGMENT_ROWS)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jammi-writer") as pool:
        texts = [rows.text(i) for i in firsts]
        for chunk in encode_sorted(encoder, texts, sizer, plan, auto_size=auto,
                                   device=getattr(encoder, "device", "cpu")):
            ok = np.array([e is None for e in chunk.errors], dtype=bool)
            for j, error in zip(chunk.ids, chunk.errors, strict=True):
                if error:
                    stats.row_error(rows.keys[firsts[j]], error)
            members = [by_text[bounds[j]:bounds[j + 1]] for j in chunk.ids]
            sizes = np.array([len(m) for m in members], dtype=np.int64)
            picked = np.concatenate(members)
            local = np.repeat(np.arange(len(chunk.ids)), sizes)
            good = ok[local]
            stats.rows_failed += int((~good).sum())
            stats.rows_encoded += int(ok.sum())
            stats.rows_reused += int(good.sum()) - int(ok.sum())
            picked, local = picked[good], local[good]
            table = contract_rows(encoder.model_id, encoder.dimensions, source,
                                  [rows.keys[i] for i in picked], [rows.hashes[i] for i in picked],
                                  chunk.vectors[local],
                                  [rows.doc_ids[i] for i in picked] if chunks else None,
                                  [rows.partitions[i] for i in picked] if parted else None)
            if pending is not None:
                pending.result()
            pending = pool.submit(segments.write, table)
            stats.rows_embedded += table.num_rows
            stats.seconds = time.perf_counter() - t0
            if progress:
                progress(f"{source}: {stats.rows_encoded}/{len(firsts)} distinct texts encoded, "
                         f"{stats.rows_embedded}/{len(rows.keys)} rows embedded, {stats.rows_skipped} "
                         f"skipped ({stats.rows_per_second:.0f} texts/s, batch {sizer.size})")
        if pending is not None:
            pending.result()
    stats.rows_truncated += plan.truncated
    stats.batch_size_start = sizer.ceiling  # the calibrated (or declared) size
    stats.batch_size_end = sizer.size
    stats.oom_events = sizer.oom_events
    stats.segments = segments.close()
    stats.seconds = time.perf_counter() - t0

