"""`<pipeline>_ann_index`: the USearch HNSW sidecar of the pipeline's active table."""

import dagster as dg

from jammi_assets.config import Project
from jammi_assets.errors import ArtifactError
from jammi_assets.indexes.ann import build_index
from jammi_assets.quality.dagster_checks import check_result, check_specs
from jammi_assets.quality.embedding_checks import ANN_RECALL, ann_recall
from resources.artifacts import ArtifactStore


def ann_index_asset(project: Project, pipeline: str) -> dg.AssetsDefinition:
    pipe = project.pipelines[pipeline]

    @dg.asset(
        name=f"{pipeline}_ann_index",
        deps=[f"{pipeline}_embeddings"],
        group_name="indexes",
        # refresh when upstream changes, never past a failed blocking check
        automation_condition=dg.AutomationCondition.eager()
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        kinds={"usearch"},
        description=(
            f"HNSW ({pipe.index.metric}) sidecar over the active `{pipeline}` table; "
            "disposable: search falls back to exact scoring without it."
        ),
        check_specs=check_specs(f"{pipeline}_ann_index", [ANN_RECALL]),
    )
    def _index(context: dg.AssetExecutionContext, artifacts: ArtifactStore):
        rec = artifacts.catalog().active(pipeline=pipeline)
        if rec is None:
            raise ArtifactError(f"pipeline {pipeline!r} has no ready embedding table to index")
        stats = build_index(rec.base_path, rec.dimensions, pipe.index)
        context.log.info(f"{rec.table_name}: indexed {stats.rows} vectors in {stats.seconds:.1f}s")
        recall = ann_recall(rec.base_path, rec.parquet_path, stats.rows, rec.dimensions, pipe.index,
                            pipe.quality.min_recall, pipe.quality.recall_queries)
        artifacts.catalog().record_checks(context.run_id, f"{pipeline}_ann_index", None, [recall])
        return dg.MaterializeResult(
            check_results=[check_result(recall)],
            metadata={
                "table_name": rec.table_name,
                "path": dg.MetadataValue.path(str(stats.path)),
                "vectors": stats.rows,
                "build_seconds": round(stats.seconds, 2),
                "index_bytes": stats.bytes,
                **{f"index/{k}": v for k, v in pipe.index.model_dump().items()},
            }
        )

    return _index
