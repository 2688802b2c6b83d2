"""Gold: `<pipeline>_embeddings`, a new embedding table per materialization, switched to
(blue/green) once it has passed its checks."""

import hashlib
import json

import dagster as dg
import pyarrow.parquet as pq

from jammi_assets.catalog.store import frame_path
from jammi_assets.config import PipelineSpec, Project, SourceSpec
from jammi_assets.embeddings.build import (
    EmbedStats,
    build_embedding_table,
    generation_of,
    source_schema_version,
)
from jammi_assets.quality import embedding_checks as ec
from jammi_assets.quality.dagster_checks import check_result, check_specs
from resources.artifacts import ArtifactStore
from resources.embedding_model import EmbeddingModelResource


def code_version(pipe: PipelineSpec, src: SourceSpec | None = None) -> str:
    """Changes when the model, the text spec or the source schema version changes, so Dagster
    flags the table stale (unchanged for schema v1, the version before versioned schemas)."""
    spec: dict = {"model": pipe.model, "text": pipe.text_columns}
    version = source_schema_version(src) if src is not None else "v1"
    if version != "v1":
        spec["schema_version"] = version
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def embeddings_asset(project: Project, pipeline: str) -> dg.AssetsDefinition:
    pipe = project.pipelines[pipeline]
    source, src = project.embedding_source(pipe.source), project.frame_spec(pipe.source)
    frame_asset = project.frame_asset(pipe.source)

    @dg.asset(
        name=f"{pipeline}_embeddings",
        deps=[frame_asset],
        group_name="embeddings",
        kinds={"pytorch", "parquet"},
        code_version=code_version(pipe, src),
        pool="embedding_model",
        # refresh when upstream changes, never past a failed blocking check
        automation_condition=dg.AutomationCondition.eager()
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        description=(
            f"Embeddings of `{source}` ({' + '.join(pipe.text_columns)}) by `{pipe.model}`, "
            "as a timestamped Parquet table under jammi_db/."
        ),
        metadata={"model": pipe.model, "text_columns": ", ".join(pipe.text_columns)},
        check_specs=check_specs(f"{pipeline}_embeddings", list(ec.TABLE_CHECKS)),
    )
    def _embeddings(
        context: dg.AssetExecutionContext,
        embedding_model: EmbeddingModelResource,
        artifacts: ArtifactStore,
    ):
        encoder = embedding_model.encoder(pipe.model)  # fails before any table is begun
        for action in artifacts.recover():
            context.log.warning(f"recovered {action.table_name}: {action.action}")
        catalog = artifacts.catalog()
        # drift is measured against a table of the same generation (schema, text spec, model):
        # the active one if it is, else the newest such ready table
        generation = generation_of(pipe, src)
        active = catalog.active(pipeline=pipeline)
        previous = active if active is not None and active.generation == generation else next(
            (t for t in catalog.tables(pipeline=pipeline, status="ready") if t.generation == generation),
            None)
        frame_file = frame_path(artifacts.path, frame_asset)

        def verify(stats: EmbedStats) -> list:
            validated_rows = pq.ParquetFile(frame_file).metadata.num_rows
            return [
                *ec.vector_integrity(stats.parquet_path, stats.dimensions),
                ec.row_count(stats.rows_embedded, validated_rows, stats.rows_skipped, stats.rows_failed),
                ec.embedding_drift(stats.parquet_path, previous.parquet_path if previous else None,
                                   stats.dimensions, pipe.quality.max_centroid_shift,
                                   pipe.quality.drift_severity),
            ]

        stats = build_embedding_table(
            catalog=catalog,
            frame_file=frame_file,
            verify=verify,
            pipeline=pipeline,
            pipe=pipe,
            source=source,
            src=src,
            encoder=encoder,
            progress=context.log.info,
        )
        if stats.rows_truncated:
            context.log.warning(
                f"{source}: {stats.rows_truncated} text(s) longer than the model window "
                f"({encoder.max_seq_length} tokens) were truncated"
            )
        catalog.record_checks(context.run_id, f"{pipeline}_embeddings", None, stats.outcomes)
        if stats.blocked_by:
            context.log.error(
                f"{stats.table_name} failed its quality gate ({', '.join(stats.blocked_by)}); "
                "it is marked failed and the active table keeps serving search"
            )
        return dg.MaterializeResult(
            check_results=[check_result(o) for o in stats.outcomes],
            metadata={
                "table_status": "failed" if stats.blocked_by else "ready",
                "dagster/row_count": stats.rows_embedded,
                "dagster/column_schema": dg.TableSchema(
                    columns=[
                        dg.TableColumn("_row_id", "string"),
                        dg.TableColumn("_source_id", "string"),
                        dg.TableColumn("_model_id", "string"),
                        dg.TableColumn("vector", f"fixed_size_list<float32, {stats.dimensions}>"),
                        dg.TableColumn("_content_hash", "string"),
                    ]
                ),
                "table_name": stats.table_name,
                "active_table": stats.table_name if not stats.blocked_by else (
                    active.table_name if active else ""),
                "generation": generation,
                "source_schema_version": source_schema_version(src),
                "path": dg.MetadataValue.path(str(stats.parquet_path)),
                "model": stats.model_id,
                "device": getattr(encoder, "device", "cpu"),
                "dimensions": stats.dimensions,
                "rows_embedded": stats.rows_embedded,
                "rows_skipped": stats.rows_skipped,
                "rows_failed": stats.rows_failed,
                "rows_truncated": stats.rows_truncated,
                "rows_per_second": round(stats.rows_per_second, 1),
                "seconds": round(stats.seconds, 2),
                "batch_size": f"{stats.batch_size_start} -> {stats.batch_size_end}",
                "oom_events": stats.oom_events,
            }
        )

    return _embeddings
