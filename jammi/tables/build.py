"""Building one embedding table from a validated frame on disk, record batch by record
batch, under the catalog's building -> ready | failed protocol."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from jammi.embedding.encode import BatchSizer, encode_window
from jammi.embedding.model import Encoder
from jammi.embedding.texts import TEXT_SEPARATOR, compose_texts, content_hash
from jammi.embedding.vectors import to_vector_array
from jammi.errors import ArtifactError, SourceError
from jammi.quality.outcome import CheckOutcome, blocking_failures
from jammi.spec.chunking import CHUNK_DOC
from jammi.spec.project import PipelineSpec, SourceSpec
from jammi.storage import tmp_path, write_json_atomic
from jammi.tables.catalog import (
    STATUS_BUILDING,
    STATUS_FAILED,
    STATUS_READY,
    TABLES_DIR,
    Catalog,
    now,
)
from jammi.tables.contract import DOC_ID_COLUMN, new_table_name, sidecar, table_schema
from jammi.tables.generation import generation_of, source_schema_version
from jammi.tables.versions import OUTCOME_REBUILT, Counts, FileRef, Version

WINDOW_ROWS = 2048
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
    rows_encoded: int = 0  # texts this run sent through the model
    counts: Counts = field(default_factory=Counts)  # what the refresh did (outcome, added...)
    version: int = 0
    outcomes: list = field(default_factory=list)
    blocked_by: list[str] = field(default_factory=list)

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
    frame_file: Path,
    pipeline: str,
    pipe: PipelineSpec,
    source: str,
    src: SourceSpec,
    encoder: Encoder,
    progress: Progress | None = None,
    verify: Verify | None = None,
    full_token: str | None = None,
) -> EmbedStats:
    """Embed the validated frame at `frame_file` into a new table; when whole, mark it ready
    and switch the pipeline's active pointer to it in one catalog transaction (blue/green).

    A failure marks the table failed, removes its partial files and re-raises; the
    pipeline's active table keeps serving search throughout, and stays active (ready, for
    rollback) after the switch. `verify` runs on the complete Parquet before the table is
    marked ready; when one of its outcomes is a failed error-severity check, the table is
    marked failed instead (files kept for inspection) and `stats.blocked_by` names the checks.
    """
    if not frame_file.exists():
        raise SourceError(
            f"source {source!r}: validated frame {frame_file} does not exist; "
            f"materialize validated_{source} first"
        )
    tables_dir = catalog.artifact_dir / TABLES_DIR
    try:
        tables_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ArtifactError(f"artifact_dir {str(catalog.artifact_dir)!r} is not writable: {err}") from None
    taken = {t.table_name for t in catalog.tables(source=source)}
    name = new_table_name(tables_dir, source, encoder.model_id, taken)
    base = tables_dir / name
    final = sidecar(base, ".parquet")
    stats = EmbedStats(name, final, encoder.model_id, encoder.dimensions,
                       batch_size_start=pipe.batch_size, generation=generation_of(pipe, src))
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
    write_json_atomic(sidecar(base, ".manifest.json"),
                      _manifest(stats, pipeline, pipe, source, src, STATUS_BUILDING))
    try:
        _write(stats, frame_file, pipe, source, src, encoder, final, progress)
        stats.outcomes = verify(stats) if verify else []
        stats.blocked_by = [o.name for o in blocking_failures(stats.outcomes)]
        if stats.blocked_by:
            catalog.set_status(name, STATUS_FAILED, error=f"quality gate: {', '.join(stats.blocked_by)}",
                               **_counts(stats))
            return stats
        ready = _manifest(stats, pipeline, pipe, source, src, STATUS_READY)
        ready["checks"] = [_outcome_json(o) for o in stats.outcomes]  # what recovery may trust
        ready["full_token"] = full_token  # the rebuild request this table answers (partitions share one)
        write_json_atomic(sidecar(base, ".manifest.json"), ready)
        stats.counts = Counts(added=stats.rows_embedded, rows_encoded=stats.rows_encoded,
                              outcome=OUTCOME_REBUILT, seconds=round(stats.seconds, 3))
        first = Version(name, 0, (FileRef(final.name, stats.rows_embedded),), rows=stats.rows_embedded,
                        counts=stats.counts)
        catalog.activate(name, first=first, **_counts(stats))
    except BaseException as err:
        for path in (tmp_path(final), final, sidecar(base, ".manifest.json")):
            path.unlink(missing_ok=True)
        catalog.set_status(name, STATUS_FAILED, error=f"{type(err).__name__}: {err}"[:2000],
                           **_counts(stats))
        raise
    return stats


def _outcome_json(o: CheckOutcome) -> dict:
    def number(x):
        return None if x is None else float(x)
    return {**dataclasses.asdict(o), "passed": bool(o.passed), "statistic": number(o.statistic),
            "threshold": number(o.threshold)}


def _counts(stats: EmbedStats) -> dict:
    return {k: getattr(stats, k) for k in ("rows_embedded", "rows_skipped", "rows_failed", "rows_truncated")}


def encode_rows(encoder: Encoder, source: str, keys: list[str], texts: list[str], sizer: BatchSizer,
                stats: EmbedStats, doc_ids: list[str] | None = None) -> pa.Table:
    """Contract rows for `keys` and their non-empty `texts` (and `_doc_id`, when `doc_ids` are
    given: chunks); a text that fails even alone is counted in `stats.rows_failed` and left out."""
    stats.rows_truncated += count_truncated(encoder, texts)
    window = encode_window(encoder, texts, sizer)
    ok = np.array([e is None for e in window.errors], dtype=bool)
    stats.rows_failed += int((~ok).sum())
    n = int(ok.sum())
    stats.rows_encoded += n
    good_texts = [t for t, g in zip(texts, ok, strict=True) if g]
    columns = {
        "_row_id": pa.array(np.asarray(keys, dtype=object)[ok] if n else [], pa.string()),
        "_source_id": pa.array([source] * n, pa.string()),
        "_model_id": pa.array([encoder.model_id] * n, pa.string()),
        "vector": to_vector_array(window.vectors[ok].reshape(n, encoder.dimensions)),
        "_content_hash": pa.array([content_hash(encoder.model_id, t) for t in good_texts], pa.string()),
    }
    if doc_ids is not None:
        columns[DOC_ID_COLUMN] = pa.array(np.asarray(doc_ids, dtype=object)[ok] if n else [], pa.string())
    return pa.table(columns, schema=table_schema(encoder.dimensions, doc_ids is not None))


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


def _write(stats: EmbedStats, frame_file: Path, pipe: PipelineSpec, source: str,
           src: SourceSpec, encoder: Encoder, final: Path, progress: Progress | None) -> None:
    t0 = time.perf_counter()
    pf = pq.ParquetFile(frame_file)
    total = pf.metadata.num_rows
    sizer = BatchSizer(size=pipe.batch_size)
    tmp = tmp_path(final)
    docs = doc_column(pipe)
    wanted = list(dict.fromkeys([src.key, *pipe.embedded_columns, *([docs] if docs else [])]))
    with pq.ParquetWriter(tmp, table_schema(encoder.dimensions, docs is not None),
                          compression="zstd") as writer:
        for batch in pf.iter_batches(batch_size=WINDOW_ROWS, columns=wanted):
            keys, texts, skipped, doc_ids = keyed_rows(batch.to_pandas(), src.key, pipe.embedded_columns,
                                                       docs)
            stats.rows_in += len(keys) + skipped
            stats.rows_skipped += skipped
            if keys:
                rows = encode_rows(encoder, source, keys, texts, sizer, stats, doc_ids)
                writer.write_table(rows)
                stats.rows_embedded += rows.num_rows
            stats.seconds = time.perf_counter() - t0
            if progress:
                progress(
                    f"{source}: {stats.rows_in}/{total} rows read, {stats.rows_embedded} embedded, "
                    f"{stats.rows_skipped} skipped ({stats.rows_per_second:.0f} rows/s)"
                )
    stats.batch_size_end = sizer.size
    stats.oom_events = sizer.oom_events
    os.replace(tmp, final)
    stats.seconds = time.perf_counter() - t0
