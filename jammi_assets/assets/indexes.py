"""`<pipeline>_ann_index`: the USearch HNSW sidecar of the pipeline's active table."""

import dagster as dg

from jammi import keys
from jammi.app.embeddings import index_pipeline
from jammi.spec.project import Project
from jammi.tables.checks import ANN_RECALL
from jammi_assets.checks import check_result, check_specs
from jammi_assets.partitions import source_partitions


def ann_index_asset(project: Project, pipeline: str) -> dg.AssetsDefinition:
    pipe = project.pipelines[pipeline]
    name = keys.ann_index(pipeline)

    @dg.asset(
        name=name,
        deps=[keys.embeddings(pipeline)],
        group_name="indexes",
        # refresh when upstream changes, never past a failed blocking check
        automation_condition=dg.AutomationCondition.eager()
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        kinds={"usearch"},
        description=(
            f"HNSW ({pipe.index.metric}) sidecar over the active `{pipeline}` table; "
            "disposable: search falls back to exact scoring without it."
        ),
        check_specs=check_specs(name, [ANN_RECALL]),
        partitions_def=source_partitions(project, pipe.source),
    )
    def _index(context: dg.AssetExecutionContext):
        run = index_pipeline(project, pipeline, context.run_id,
                             context.partition_key if context.has_partition_key else None)
        context.log.info(f"{run.table.table_name}: indexed {run.stats.rows} vectors in "
                         f"{run.stats.seconds:.1f}s")
        return dg.MaterializeResult(
            check_results=[check_result(run.recall)],
            metadata={
                "table_name": run.table.table_name,
                "path": dg.MetadataValue.path(str(run.stats.path)),
                "vectors": run.stats.rows,
                "build_seconds": round(run.stats.seconds, 2),
                "index_bytes": run.stats.bytes,
                **{f"index/{k}": v for k, v in pipe.index.model_dump().items()},
            }
        )

    return _index
