"""An entity's fusion step: fuse its sources' validated rows (incrementally over the last
accepted run), check the result, and keep the state only when the checks pass."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from jammi import keys
from jammi.embedding.model import Encoder
from jammi.fusion.fuse import FusionResult, fuse_entity
from jammi.fusion.state import load_state, save_state
from jammi.quality.fused_checks import fused_checks
from jammi.quality.outcome import CheckOutcome, blocking_failures
from jammi.spec.project import Project
from jammi.tables.catalog import Catalog


@dataclass
class FusedEntity:
    result: FusionResult
    outcomes: list[CheckOutcome]
    incremental: bool


def fuse_and_check(project: Project, entity: str, frames: dict[str, pd.DataFrame], encoder: Encoder,
                   run_id: str | None = None) -> FusedEntity:
    ent = project.entities[entity]
    previous = load_state(project.artifact_dir, entity)
    result = fuse_entity(project, entity, frames, encoder, previous)
    outcomes = fused_checks(result.entities, result.provenance, ent.id_column(entity), ent)
    Catalog(project.artifact_dir).record_checks(run_id, keys.fused(entity), None, outcomes)
    if not blocking_failures(outcomes):
        save_state(project.artifact_dir, entity, result)
    return FusedEntity(result, outcomes, previous is not None)
