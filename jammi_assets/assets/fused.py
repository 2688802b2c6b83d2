"""Gold: `fused_<entity>`, one row per entity resolved across its sources, with field-level
provenance and the links that made each entity."""

import dagster as dg

from jammi import keys
from jammi.app.fusion import fuse_and_check
from jammi.quality.fused_checks import FUSED_CHECKS
from jammi.spec.project import DEFAULT_MODEL, Project
from jammi_assets.checks import check_result, check_specs
from jammi_assets.metadata import frame_metadata
from resources.embedding_model import EmbeddingModelResource


def fused_asset(project: Project, entity: str) -> dg.AssetsDefinition:
    ent = project.entities[entity]
    fused, provenance, links = keys.fused_outputs(entity)
    model = ent.matching.model or DEFAULT_MODEL

    @dg.multi_asset(
        name=keys.fuse_step(entity),
        # the engine writes validated frames itself: they are read back through the frame IO manager
        ins={s: dg.AssetIn(keys.validated(s), input_manager_key="frame_io") for s in ent.sources},
        check_specs=check_specs(fused, list(FUSED_CHECKS)),
        outs={
            fused: dg.AssetOut(
                group_name="fused", io_manager_key="frame_io", kinds={"pandas"},
                description=f"One row per `{entity}` resolved across {', '.join(ent.sources)}; "
                f"`_sources` and `_record_count` say what was merged.",
                automation_condition=dg.AutomationCondition.eager()
                & dg.AutomationCondition.all_deps_blocking_checks_passed(),
            ),
            provenance: dg.AssetOut(
                group_name="fused", io_manager_key="frame_io", kinds={"pandas"},
                description=f"Per `{entity}` and field: the winning source, record, timestamp and rule.",
            ),
            links: dg.AssetOut(
                group_name="fused", io_manager_key="frame_io", kinds={"pandas"},
                description=f"Every link between `{entity}` records with its score, rule and whether "
                "clustering accepted it.",
            ),
        },
    )
    def _fuse(context: dg.AssetExecutionContext, embedding_model: EmbeddingModelResource, **frames):
        run = fuse_and_check(project, entity, frames, embedding_model.lazy(model), context.run_id)
        result = run.result
        context.log.info(f"{entity}: {result.stats}")
        stats = {k: v for k, v in result.stats.items() if not isinstance(v, dict)}
        yield dg.Output(result.entities, output_name=fused, metadata={
            **frame_metadata(result.entities), **stats,
            "records_per_source": dg.MetadataValue.json(result.stats["records_per_source"]),
            "thresholds": dg.MetadataValue.json(result.stats["thresholds"]),
            "match_models": dg.MetadataValue.json(result.models),
            "incremental": run.incremental,
        })
        yield dg.Output(result.provenance, output_name=provenance, metadata=frame_metadata(result.provenance))
        yield dg.Output(result.links, output_name=links, metadata=frame_metadata(result.links))
        for outcome in run.outcomes:
            yield check_result(outcome, fused)

    return _fuse
