"""A pipeline's gold steps: embed its validated rows into a new table that becomes active
once it passes its checks (blue/green), and build the active table's HNSW sidecar."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from jammi import keys
from jammi.embedding.model import Encoder
from jammi.errors import ArtifactError
from jammi.quality.outcome import CheckOutcome
from jammi.spec.project import Project
from jammi.storage import frame_path
from jammi.tables import checks
from jammi.tables.build import EmbedStats, build_embedding_table
from jammi.tables.catalog import STATUS_READY, Catalog, TableRecord
from jammi.tables.generation import generation_of, source_schema_version
from jammi.tables.index import IndexStats, build_index
from jammi.tables.recovery import RecoveryAction, recover


@dataclass
class EmbeddingRun:
    stats: EmbedStats
    generation: str
    schema_version: str
    active_table: str  # the table search serves after this run
    recovered: list[RecoveryAction] = field(default_factory=list)


def _same_generation(catalog: Catalog, pipeline: str, generation: str) -> TableRecord | None:
    """The table drift is measured against: the active one when it is of `generation`, else
    the newest ready table of it."""
    active = catalog.active(pipeline=pipeline)
    if active is not None and active.generation == generation:
        return active
    return next((t for t in catalog.tables(pipeline=pipeline, status=STATUS_READY)
                 if t.generation == generation), None)


def embed_pipeline(project: Project, pipeline: str, encoder: Encoder,
                   progress: Callable[[str], None] | None = None,
                   run_id: str | None = None) -> EmbeddingRun:
    """Build `pipeline`'s next table from its stored validated (or fused) frame."""
    pipe = project.pipelines[pipeline]
    source, src = project.embedding_source(pipe.source), project.frame_spec(pipe.source)
    catalog = Catalog(project.artifact_dir)
    recovered = recover(catalog)
    generation = generation_of(pipe, src)
    previous = _same_generation(catalog, pipeline, generation)
    frame_file = frame_path(project.artifact_dir, project.frame_asset(pipe.source))

    def verify(stats: EmbedStats) -> list[CheckOutcome]:
        validated_rows = pq.ParquetFile(frame_file).metadata.num_rows
        return [
            *checks.vector_integrity(stats.parquet_path, stats.dimensions),
            checks.row_count(stats.rows_embedded, validated_rows, stats.rows_skipped, stats.rows_failed),
            checks.embedding_drift(stats.parquet_path, previous.parquet_path if previous else None,
                                   stats.dimensions, pipe.quality.max_centroid_shift,
                                   pipe.quality.drift_severity),
        ]

    stats = build_embedding_table(catalog=catalog, frame_file=frame_file, verify=verify,
                                  pipeline=pipeline, pipe=pipe, source=source, src=src,
                                  encoder=encoder, progress=progress)
    catalog.record_checks(run_id, keys.embeddings(pipeline), None, stats.outcomes)
    active = catalog.active(pipeline=pipeline)
    return EmbeddingRun(stats, generation, source_schema_version(src),
                        active.table_name if active else "", recovered)


@dataclass
class IndexRun:
    table: TableRecord
    stats: IndexStats
    recall: CheckOutcome


def index_pipeline(project: Project, pipeline: str, run_id: str | None = None) -> IndexRun:
    """Build the HNSW sidecar of `pipeline`'s active table and check its recall."""
    pipe = project.pipelines[pipeline]
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline=pipeline)
    if rec is None:
        raise ArtifactError(f"pipeline {pipeline!r} has no ready embedding table to index")
    stats = build_index(rec.base_path, rec.dimensions, pipe.index)
    recall = checks.ann_recall(rec.base_path, rec.parquet_path, stats.rows, rec.dimensions, pipe.index,
                               pipe.quality.min_recall, pipe.quality.recall_queries)
    catalog.record_checks(run_id, keys.ann_index(pipeline), None, [recall])
    return IndexRun(rec, stats, recall)
