"""Gold: `<pipeline>_embeddings`, a new embedding table per materialization, switched to
(blue/green) once it has passed its checks."""

import dagster as dg

from jammi import keys
from jammi.app.embeddings import embed_pipeline
from jammi.redact import redact
from jammi.spec.project import PipelineSpec, Project
from jammi.tables.build import EmbedStats
from jammi.tables.checks import TABLE_CHECKS
from jammi.tables.contract import CONTRACT_COLUMNS
from jammi.tables.generation import generation_of
from jammi_assets.checks import check_result, check_specs
from jammi_assets.partitions import source_partitions
from resources.embedding_model import EmbeddingModelResource


def contract_schema(dimensions: int) -> dg.TableSchema:
    types = {"vector": f"fixed_size_list<float32, {dimensions}>"}
    return dg.TableSchema(columns=[dg.TableColumn(c, types.get(c, "string")) for c in CONTRACT_COLUMNS])


class EmbeddingsConfig(dg.Config):
    """Run configuration of an embeddings asset."""

    full: bool = False  # rebuild the whole table instead of refreshing the active one


def embeddings_asset(project: Project, pipeline: str) -> dg.AssetsDefinition:
    pipe = project.pipelines[pipeline]
    rows_of = project.pipeline_input(pipeline)  # the source, entity or chunks it embeds
    source = project.embedding_source(rows_of)
    name = keys.embeddings(pipeline)

    @dg.asset(
        name=name,
        deps=[project.frame_asset(rows_of)],
        group_name="embeddings",
        kinds={pipe.provider.kind if pipe.provider else "pytorch", "parquet"},
        # the generation (model x text spec x schema version): Dagster flags the table stale
        # when it changes
        code_version=generation_of(pipe, project.frame_spec(rows_of)),
        pool="embedding_model",
        # refresh when upstream changes, never past a failed blocking check
        automation_condition=dg.AutomationCondition.eager()
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        description=(
            f"Embeddings of `{source}` ({' + '.join(pipe.text_columns)}) by `{pipe.model_id}`, "
            "as a Parquet table under jammi_db/ refreshed in place: each refresh commits a version."
        ),
        metadata={"model": pipe.model_id, "backend": pipe.provider.kind if pipe.provider else pipe.backend,
                  "text_columns": ", ".join(pipe.text_columns)},
        check_specs=check_specs(name, list(TABLE_CHECKS)),
        # a partitioned source's pipeline runs per partition: each commits what its partition
        # changed into the one table of the pipeline
        partitions_def=source_partitions(project, pipe.source),
    )
    def _embeddings(context: dg.AssetExecutionContext, config: EmbeddingsConfig,
                    embedding_model: EmbeddingModelResource):
        # loads only when a row needs encoding (a provider sends nothing until then)
        encoder = embedding_model.for_pipeline(pipe, project.artifact_dir, project.secrets)
        partition = context.partition_key if context.has_partition_key else None
        # a backfill's partitions (one --full request) rebuild the table once, then refresh it
        token = context.run.tags.get("dagster/backfill") or context.run_id
        run = embed_pipeline(project, pipeline, encoder, context.log.info, context.run_id, full=config.full,
                             partition=partition, full_token=token)
        for action in run.recovered:
            context.log.warning(f"recovered {action.table_name}: {action.action}")
        stats = run.stats
        if stats.rows_truncated:
            context.log.warning(
                f"{source}: {stats.rows_truncated} text(s) longer than the model window "
                f"({encoder.max_seq_length} tokens) were truncated"
            )
        if stats.row_errors:
            context.log.warning(f"{source}: {stats.rows_failed} row(s) could not be embedded and were left "
                                f"out (they are retried by the next run); first: {stats.row_errors[0][0]}: "
                                f"{stats.row_errors[0][1]}")
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
                "table_rows": stats.table_rows or stats.rows_embedded,
                "dagster/column_schema": contract_schema(stats.dimensions),
                "table_name": stats.table_name,
                "version": stats.version,
                **stats.counts.as_dict(),
                "model_loaded": encoder.loaded,
                "active_table": run.active_table,
                "generation": run.generation,
                "source_schema_version": run.schema_version,
                "path": dg.MetadataValue.path(str(stats.parquet_path)),
                "model": stats.model_id,
                "device": encoder.device if encoder.loaded else "not loaded",
                "dimensions": stats.dimensions,
                "rows_embedded": stats.rows_embedded,
                "rows_skipped": stats.rows_skipped,
                "rows_failed": stats.rows_failed,
                "rows_truncated": stats.rows_truncated,
                "rows_per_second": round(stats.rows_per_second, 1),
                "seconds": round(stats.seconds, 2),
                "batch_size": f"{stats.batch_size_start} -> {stats.batch_size_end}",
                "oom_events": stats.oom_events,
                **provider_metadata(pipe, stats),
            }
        )

    return _embeddings


def provider_metadata(pipe: PipelineSpec, stats: EmbedStats) -> dict:
    """A provider run's cost (requests, tokens sent, retries, waits, estimated cost, and what the
    unchanged rows saved) and the rows it could not embed, as `_row_id | _status | _error`."""
    out: dict = {}
    if stats.row_errors:
        lines = ["| _row_id | _status | _error |", "|---|---|---|"]
        lines += [f"| {key} | error | {error.replace('|', '/')} |" for key, error in stats.row_errors]
        out["failed_rows"] = dg.MetadataValue.md("\n".join(lines))
    usage = stats.counts.usage
    if pipe.provider is None or usage is None:
        return out
    spec = pipe.provider
    out.update({k: v for k, v in usage.items() if v is not None})
    out["provider"] = f"{spec.kind} {spec.model} at {redact(spec.base_url)}"
    if spec.price_per_million_tokens is not None:
        out["price_per_million_tokens"] = spec.price_per_million_tokens
    return out
