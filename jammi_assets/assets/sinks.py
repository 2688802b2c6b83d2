"""`<pipeline>_<sink>`: a serving store (pgvector, LanceDB) kept exact with the pipeline's active
embedding table, checked by `sink_parity` (blocking)."""

import dagster as dg

from jammi import keys
from jammi.app.sinks import sync_sink
from jammi.sinks.parity import SINK_PARITY
from jammi.spec.project import Project
from jammi_assets.checks import check_result, check_specs
from jammi_assets.partitions import source_partitions

KINDS = {"pgvector": {"postgres", "pgvector"}, "lancedb": {"lancedb"}}


class SinkConfig(dg.Config):
    """Run configuration of a sink asset."""

    full: bool = False  # compare every store row with the table, whatever the store's state says


def sink_asset(project: Project, pipeline: str, sink: str) -> dg.AssetsDefinition:
    pipe = project.pipelines[pipeline]
    spec = pipe.sinks[sink]
    name = keys.sink(pipeline, sink)
    where = spec.table if spec.kind == "pgvector" else f"{spec.table} in {spec.uri}"
    columns = f", with {', '.join(spec.columns)}" if spec.columns else ""

    @dg.asset(
        name=name,
        deps=[keys.embeddings(pipeline)],
        group_name="sinks",
        kinds=KINDS[spec.kind],
        # follow every committed version, never past a failed blocking check
        automation_condition=dg.AutomationCondition.eager()
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        description=(f"The `{pipeline}` vectors served from {spec.kind} ({where}{columns}): each run applies "
                     "the table versions the store has not applied yet; a new generation fills a new "
                     "store table and switches to it once its parity check passes."),
        metadata={"kind": spec.kind, "table": spec.table, "columns": ", ".join(spec.columns)},
        check_specs=check_specs(name, [SINK_PARITY]),
        # a partition run brings the whole store up to the table, which every partition writes
        partitions_def=source_partitions(project, pipe.source),
    )
    def _sink(context: dg.AssetExecutionContext, config: SinkConfig):
        run = sync_sink(project, pipeline, sink, full=config.full, run_id=context.run_id,
                        partition=context.partition_key if context.has_partition_key else None,
                        progress=context.log.info)
        result = run.result
        if not run.outcome.passed:
            context.log.error(f"{name}: {run.outcome.description}; "
                              + (f"{run.stable} keeps serving {result.serving_table}"
                                 if result.serving_table != result.store_table else "materialize it again"))
        return dg.MaterializeResult(
            check_results=[check_result(run.outcome)],
            metadata={
                "dagster/row_count": result.rows,
                "stable_name": run.stable,
                "store_table": result.store_table,
                "serving_table": result.serving_table,
                "table_name": result.jammi_table,
                "from_version": -1 if result.from_version is None else result.from_version,
                "version": result.version,
                "how": result.how,
                "upserted": result.upserted,
                "deleted": result.deleted,
                "column_updates": result.column_updates,
                "switched": result.switched,
                "seconds": round(result.seconds, 3),
                **{f"seconds/{k.removesuffix('_s')}": v for k, v in result.steps.items()},
            },
        )

    return _sink
