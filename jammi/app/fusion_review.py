"""Teaching fusion: the pairs to ask a person about, storing their answers, loading answers
from a CSV, and listing what was said. The CLI (`jammi fusion review`, `jammi fusion labels`)
calls these; the next materialization of `fused_<entity>` uses the answers
(jammi/app/fusion.py)."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from jammi import keys, store
from jammi.errors import FusionError
from jammi.fusion.labels import PAIR_KEY, labels_frame, oriented, read_labels_csv, review_queue
from jammi.fusion.state import load_review, state_dir
from jammi.shared import read_frame
from jammi.spec.project import Project
from jammi.tables.catalog import Catalog, now


def default_labeller() -> str:
    """Who is answering: $JAMMI_USER, else the login name."""
    try:
        return os.environ.get("JAMMI_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _entity(project: Project, entity: str):
    if entity not in project.entities:
        known = ", ".join(project.entities) or "none"
        raise FusionError(f"entity {entity!r} is not declared in jammi.yaml (entities: {known})")
    return project.entities[entity]


@dataclass
class ReviewPair:
    """One pair to show: its key, score, threshold, whether it is linked, the similarity of
    each compared field, and the two records' field values."""

    key: tuple[str, str, str, str]
    score: float
    threshold: float
    linked: bool
    similarities: dict[str, float]
    left: dict[str, object]
    right: dict[str, object]


def review_pairs(project: Project, entity: str, limit: int | None = None) -> list[ReviewPair]:
    """The unanswered pairs the latest fusion run was least sure of, least sure first."""
    ent = _entity(project, entity)
    found = load_review(project.artifact_dir, entity)
    if found is None:
        raise FusionError(f"entity {entity!r} has not been fused yet: materialize "
                          f"{keys.fused(entity)} first (jammi materialize --select {keys.fused(entity)})")
    pairs, records = found
    labels = labels_frame(Catalog(project.artifact_dir).fusion_labels(entity))
    queue = review_queue(pairs, labels, limit)
    by_key = records.assign(_record_id=records["_record_id"].astype(str)).set_index(["_source", "_record_id"])
    fields = list(ent.fields)
    sims = [c for c in queue.columns if c.startswith("sim_")]

    def values(source: str, rid: str) -> dict[str, object]:
        try:
            row = by_key.loc[(source, rid)]
        except KeyError:
            return {}
        return {f: row[f] for f in fields if f in row.index}

    out = []
    for row in queue.itertuples(index=False):
        pair = row._asdict()
        key = tuple(str(pair[c]) for c in PAIR_KEY)
        out.append(ReviewPair(
            key=key, score=float(pair["score"]), threshold=float(pair["threshold"]),
            linked=bool(pair["linked"]),
            similarities={c.removeprefix("sim_"): float(pair[c]) for c in sims},
            left=values(key[0], key[1]), right=values(key[2], key[3]),
        ))
    return out


def record_answer(project: Project, entity: str, key: tuple[str, str, str, str], is_match: bool,
                  by: str | None = None, origin: str = "review") -> None:
    """Store one answer about a pair (a later answer about the same pair replaces it)."""
    _entity(project, entity)
    ls, lid, rs, rid = oriented(*key)
    Catalog(project.artifact_dir).add_fusion_labels([{
        "entity": entity, "left_source": ls, "left_id": lid, "right_source": rs, "right_id": rid,
        "is_match": bool(is_match), "labelled_by": by or default_labeller(), "labelled_at": now(),
        "origin": origin}])


def load_labels(project: Project, entity: str, path: Path, by: str | None = None) -> int:
    """Store every labelled pair of a CSV file (labels.read_labels_csv says which columns);
    refuses the file when a record id is unknown to the latest fusion run. Returns how many."""
    ent = _entity(project, entity)
    rows = read_labels_csv(Path(path), entity, ent)
    found = load_state_records(project, entity)
    if found is not None:
        known = set(zip(found["_source"].astype(str), found["_record_id"].astype(str), strict=True))
        unknown = [f"{s}:{i}" for r in rows for s, i in ((r[0], r[1]), (r[2], r[3])) if (s, i) not in known]
        if unknown:
            shown = ", ".join(sorted(set(unknown))[:5])
            raise FusionError(f"labels file {str(path)!r}: {len(set(unknown))} record id(s) are not "
                              f"records of entity {entity!r} ({shown}); check the columns' order")
    stamp, who = now(), by or default_labeller()
    origin = f"csv:{Path(path).name}"
    return Catalog(project.artifact_dir).add_fusion_labels([
        {"entity": entity, "left_source": ls, "left_id": lid, "right_source": rs, "right_id": rid,
         "is_match": answer, "labelled_by": who, "labelled_at": stamp, "origin": origin}
        for ls, lid, rs, rid, answer in rows])


def load_state_records(project: Project, entity: str) -> pd.DataFrame | None:
    """The records of the latest accepted fusion run (None before one)."""
    path = store.join(state_dir(project.artifact_dir, entity), "records.parquet")
    return read_frame(path, ["_source", "_record_id"]) if store.exists(path) else None


def list_labels(project: Project, entity: str) -> pd.DataFrame:
    """Every stored answer about `entity`'s pairs, oldest first."""
    _entity(project, entity)
    rows = Catalog(project.artifact_dir).fusion_labels(entity)
    columns = [*PAIR_KEY, "is_match", "labelled_by", "labelled_at", "origin"]
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(rows, columns=["entity", *columns])[columns]
