"""An entity's fusion step: fuse its sources' validated rows (incrementally over the last
accepted run) with the labels people gave (`jammi.fusion_labels`), check the result, keep the
review pairs for `jammi fusion review`, and keep the state only when the checks pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from jammi import keys
from jammi.embedding.model import Encoder
from jammi.fusion.fuse import FusionResult, fuse_entity
from jammi.fusion.labels import labels_frame
from jammi.fusion.state import load_state, save_review, save_state
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
    catalog = Catalog(project.artifact_dir)
    previous = load_state(project.artifact_dir, entity)
    labels = labels_frame(catalog.fusion_labels(entity))
    result = fuse_entity(project, entity, frames, encoder, previous, labels)
    outcomes = fused_checks(result.entities, result.provenance, ent.id_column(entity), ent,
                            labelled_decisions(result.pairs))
    catalog.record_checks(run_id, keys.fused(entity), None, outcomes)
    save_review(project.artifact_dir, entity, result)
    if not blocking_failures(outcomes):
        save_state(project.artifact_dir, entity, result)
    return FusedEntity(result, outcomes, previous is not None)


def labelled_decisions(pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(the matcher's own decision, held out from the pair's answer; the answer) per labelled pair."""
    said = pairs[pairs["answer"].notna()] if len(pairs) else pairs
    if not len(said):
        return np.zeros(0, bool), np.zeros(0, bool)
    return said["held_out"].to_numpy(dtype=np.float64) == 1, said["answer"].to_numpy(dtype=np.float64) == 1
