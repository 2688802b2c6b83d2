"""Gold: `fused_<entity>`, one row per entity resolved across its sources, with field-level
provenance and the links that made each entity."""

import dagster as dg
import numpy as np

from jammi_assets.config import DEFAULT_MODEL, Project
from jammi_assets.fusion.fuse import fuse_entity
from jammi_assets.fusion.state import load_state, save_state
from jammi_assets.metadata import frame_metadata
from jammi_assets.quality.dagster_checks import blocking_failures, check_result, check_specs
from jammi_assets.quality.fused_checks import FUSED_CHECKS, fused_checks
from resources.artifacts import ArtifactStore
from resources.embedding_model import EmbeddingModelResource

EMBED_BATCH = 64


def batched(encode, batch: int = EMBED_BATCH):
    def embed(texts: list[str]) -> np.ndarray:
        return np.concatenate([encode(texts[i:i + batch]) for i in range(0, len(texts), batch)])
    return embed


def fused_asset(project: Project, entity: str) -> dg.AssetsDefinition:
    ent = project.entities[entity]
    fused, provenance, links = f"fused_{entity}", f"fused_{entity}_provenance", f"fused_{entity}_links"
    id_col = ent.id_column(entity)
    model = ent.matching.model or DEFAULT_MODEL

    @dg.multi_asset(
        name=f"fuse_{entity}",
        ins={s: dg.AssetIn(f"validated_{s}") for s in ent.sources},
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
    def _fuse(context: dg.AssetExecutionContext, artifacts: ArtifactStore,
              embedding_model: EmbeddingModelResource, **frames):
        previous = load_state(artifacts.path, entity)

        def embed(texts: list[str]) -> np.ndarray:
            context.log.info(f"{entity}: embedding {len(texts)} new texts for blocking")
            return batched(embedding_model.encoder(model).encode)(texts)

        result = fuse_entity(project, entity, frames, embed, previous)
        outcomes = fused_checks(result.entities, result.provenance, id_col, ent)
        artifacts.catalog().record_checks(context.run_id, fused, None, outcomes)
        if not blocking_failures(outcomes):
            save_state(artifacts.path, entity, result)
        context.log.info(f"{entity}: {result.stats}")
        stats = {k: v for k, v in result.stats.items() if not isinstance(v, dict)}
        yield dg.Output(result.entities, output_name=fused, metadata={
            **frame_metadata(result.entities), **stats,
            "records_per_source": dg.MetadataValue.json(result.stats["records_per_source"]),
            "thresholds": dg.MetadataValue.json(result.stats["thresholds"]),
            "incremental": previous is not None,
        })
        yield dg.Output(result.provenance, output_name=provenance, metadata=frame_metadata(result.provenance))
        yield dg.Output(result.links, output_name=links, metadata=frame_metadata(result.links))
        for outcome in outcomes:
            yield check_result(outcome, fused)

    return _fuse
