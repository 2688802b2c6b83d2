"""Fusing the records several sources hold about one entity: standardize, link, cluster,
resolve. The same function serves the `fused_<entity>` asset, the CLI and the benchmark.

Incremental runs pass the previous `FusionState`. Embeddings are cached by the hash of their
text, so only new or changed texts reach the model. Blocking, scoring and clustering then run
over every record (they are cheap next to embedding, and a new record can change which pair
is the best match anywhere), and conflict resolution runs only for entities whose member
records changed; every other entity row and its provenance are carried over. The result
equals a full recomputation (tests/test_fusion.py compares the two).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from jammi.embedding.encode import encode_all
from jammi.embedding.model import Encoder
from jammi.embedding.texts import content_hash
from jammi.errors import FusionError
from jammi.fusion.blocking import VectorIndex
from jammi.fusion.clusters import cluster, key_links
from jammi.fusion.labels import positions
from jammi.fusion.mapping import standardize
from jammi.fusion.matching import Matches, match
from jammi.fusion.resolve import resolve
from jammi.fusion.scoring import free_text
from jammi.spec.entities import EntitySpec
from jammi.spec.project import Project

ENTITY_COLUMN = "_entity_id"
LINK_OUTPUT = ["left_source", "left_id", "right_source", "right_id", "score", "rule", "accepted",
               "refused_because"]
PAIR_OUTPUT = ["left_source", "left_id", "right_source", "right_id"]
REVIEW_COLUMNS = [*PAIR_OUTPUT, "score", "threshold", "margin", "contender", "linked", "answer", "held_out"]


@dataclass
class FusionState:
    """What an incremental run needs from the previous one."""

    records: pd.DataFrame  # standardized records with ENTITY_COLUMN
    entities: pd.DataFrame
    provenance: pd.DataFrame
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # content hash -> vector


@dataclass
class FusionResult:
    entities: pd.DataFrame
    provenance: pd.DataFrame
    links: pd.DataFrame
    candidates: pd.DataFrame
    records: pd.DataFrame
    vectors: dict[str, np.ndarray]
    stats: dict
    # per pair of sources: the contender pairs (some record's best candidate) and every labelled
    # pair, with score, threshold, per-field similarities and, when labelled, answer and the
    # held-out score (labels.py); what `jammi fusion review` shows and the label check reads
    pairs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REVIEW_COLUMNS))
    models: dict = field(default_factory=dict)  # "a~b" -> the fitted match model, described

    def state(self) -> FusionState:
        return FusionState(self.records, self.entities, self.provenance, self.vectors)


def standardized_records(project: Project, entity: str, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    ent = project.entities[entity]
    parts = []
    for name, contrib in ent.sources.items():
        if name not in frames:
            raise FusionError(f"entity {entity!r}: no frame for source {name!r}")
        parts.append(standardize(frames[name], name, contrib, ent, project.sources[name].key,
                                 entity_name=entity))
    records = pd.concat(parts, ignore_index=True)
    dupes = records.duplicated(["_source", "_record_id"], keep=False)
    if dupes.any():
        first = records.loc[dupes, ["_source", "_record_id"]].head(5).to_records(index=False).tolist()
        raise FusionError(f"entity {entity!r}: record ids repeat within a source: {first}")
    return records


def record_texts(records: pd.DataFrame, fields: list[str]) -> list[str]:
    """Each record's embedding text: `fields` joined by one space, whitespace collapsed."""
    if not fields:
        return [""] * len(records)
    parts = [records[f].astype("string").fillna("") for f in fields]
    joined = parts[0].str.cat(parts[1:], sep=" ") if len(parts) > 1 else parts[0]
    return [" ".join(t.split()) for t in joined.tolist()]


def embed_records(texts: list[str], encoder: Encoder, cache: dict[str, np.ndarray]) -> tuple[np.ndarray, int]:
    """Vectors for `texts`, embedding only those not in `cache` (keyed by model id + text, so
    another model never reuses them); empty texts get zero vectors."""
    hashes = [content_hash(encoder.model_id, t) for t in texts]
    todo = {h: t for h, t in zip(hashes, texts, strict=True) if t and h not in cache}
    if todo:
        vectors = encode_all(encoder, list(todo.values()))
        cache.update(zip(todo.keys(), np.asarray(vectors, dtype=np.float32), strict=True))
    dim = len(next(iter(cache.values()))) if cache else 1
    zero = np.zeros(dim, dtype=np.float32)
    out = np.stack([cache.get(h, zero) if t else zero for h, t in zip(hashes, texts, strict=True)]) \
        if texts else np.zeros((0, dim), dtype=np.float32)
    return out, len(todo)


def _review_pairs(found: Matches, left: pd.DataFrame, right: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """The pairs worth a person's answer (some record's best candidate) and the labelled ones."""
    scored = found.scored
    if scored.empty:
        return pd.DataFrame(columns=REVIEW_COLUMNS)
    score = scored["score"]
    contender = (score >= score.groupby(scored["left"]).transform("max")) | (
        score >= score.groupby(scored["right"]).transform("max"))
    keep = scored[contender | scored["answer"].notna()]
    linked = pd.MultiIndex.from_frame(found.links[["left", "right"]])
    sims = [c for c in scored.columns if c not in ("left", "right", "score", "margin", "answer", "held_out")]
    out = pd.DataFrame({
        "left_source": a, "left_id": left["_record_id"].astype(str).to_numpy()[keep["left"].to_numpy()],
        "right_source": b, "right_id": right["_record_id"].astype(str).to_numpy()[keep["right"].to_numpy()],
        "score": keep["score"].to_numpy(dtype=np.float64), "threshold": float(found.threshold),
        "margin": keep["margin"].to_numpy(dtype=np.float64),
        "contender": contender[keep.index].to_numpy(),
        "linked": pd.MultiIndex.from_frame(keep[["left", "right"]]).isin(linked),
        "answer": keep["answer"].to_numpy(), "held_out": keep["held_out"].to_numpy(),
    })
    for name in sims:
        out[f"sim_{name}"] = keep[name].to_numpy(dtype=np.float64)
    return out


def _match_pairs(
    records: pd.DataFrame, vectors: np.ndarray, ent: EntitySpec, labels: pd.DataFrame | None = None,
    free: dict[str, np.ndarray | None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict, pd.DataFrame, dict]:
    links, candidates, thresholds, review, models = [], [], {}, [], {}
    by_source = {s: np.flatnonzero(records["_source"].to_numpy() == s) for s in ent.sources}
    indexes: dict[str, VectorIndex] = {}  # one HNSW index per source, shared by its pairs

    def index_of(source: str) -> VectorIndex:
        if source not in indexes:
            indexes[source] = VectorIndex(np.asarray(vectors[by_source[source]], dtype=np.float32))
        return indexes[source]

    for a, b in itertools.combinations(sorted(ent.sources), 2):
        pa_, pb = by_source[a], by_source[b]
        if not len(pa_) or not len(pb):
            continue
        left = records.iloc[pa_].reset_index(drop=True)
        right = records.iloc[pb].reset_index(drop=True)
        said = positions(labels, a, b, left["_record_id"], right["_record_id"]) \
            if labels is not None and len(labels) else None
        own = {f: None if v is None else (v[pa_], v[pb]) for f, v in (free or {}).items()}
        found = match(left, right, vectors[pa_], vectors[pb], ent, (index_of(a), index_of(b)), said, own)
        thresholds[f"{a}~{b}"] = float(found.threshold)
        if found.model is not None:
            models[f"{a}~{b}"] = found.model.describe()
        review.append(_review_pairs(found, left, right, a, b))
        if len(found.links):
            links.append(pd.DataFrame({
                "left": pa_[found.links["left"].to_numpy(dtype=np.int64)],
                "right": pb[found.links["right"].to_numpy(dtype=np.int64)],
                "score": found.links["score"].to_numpy(dtype=np.float64),
                "rule": found.links["rule"].astype(str).to_numpy(),
            }))
        if len(found.candidates):
            candidates.append(pd.DataFrame({
                "left": pa_[found.candidates["left"].to_numpy(dtype=np.int64)],
                "right": pb[found.candidates["right"].to_numpy(dtype=np.int64)],
            }))
    empty_links = pd.DataFrame({"left": pd.Series(dtype="int64"), "right": pd.Series(dtype="int64"),
                                "score": pd.Series(dtype="float64"), "rule": pd.Series(dtype=object)})
    empty_pairs = empty_links[["left", "right"]]
    review = [r for r in review if len(r)]
    return (pd.concat(links, ignore_index=True) if links else empty_links,
            pd.concat(candidates, ignore_index=True) if candidates else empty_pairs, thresholds,
            pd.concat(review, ignore_index=True) if review else pd.DataFrame(columns=REVIEW_COLUMNS),
            models)


def _named(records: pd.DataFrame, pairs: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
    src, rid = records["_source"].to_numpy(), records["_record_id"].to_numpy()
    left, right = pairs["left"].to_numpy(dtype=np.int64), pairs["right"].to_numpy(dtype=np.int64)
    out = pd.DataFrame({"left_source": src[left], "left_id": rid[left],
                        "right_source": src[right], "right_id": rid[right]})
    for col in extra:
        out[col] = pairs[col].to_numpy()
    return out


def entity_ids(records: pd.DataFrame, labels: np.ndarray) -> np.ndarray:
    """Each cluster is named after its best member: lowest priority number, then source, then id."""
    order = pd.DataFrame({"label": labels, "p": records["_priority"].to_numpy(),
                          "s": records["_source"].to_numpy(), "r": records["_record_id"].to_numpy()})
    best = order.sort_values(["label", "p", "s", "r"], kind="stable").drop_duplicates("label")
    name = dict(zip(best["label"], best["s"] + ":" + best["r"], strict=True))
    return np.array([name[x] for x in labels], dtype=object)


def _signatures(records: pd.DataFrame) -> pd.Series:
    """Per entity, the sorted member records with their content hashes."""
    member = records["_source"] + "\x1f" + records["_record_id"] + "\x1f" + records["_hash"]
    return member.groupby(records[ENTITY_COLUMN]).agg(lambda s: "\x1e".join(sorted(s)))


def fuse_entity(
    project: Project,
    entity: str,
    frames: dict[str, pd.DataFrame],
    encoder: Encoder,
    previous: FusionState | None = None,
    labels: pd.DataFrame | None = None,
) -> FusionResult:
    """Fuse `entity` from its sources' validated frames; pass `previous` for an incremental run
    and `labels` (labels.labels_frame: answers about record pairs) to use what people said."""
    ent = project.entities[entity]
    id_col = ent.id_column(entity)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    records = standardized_records(project, entity, frames)
    timings["standardize_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cache = dict(previous.vectors) if previous is not None else {}
    n_embedded = 0
    free = free_text(records, [f for f in dict.fromkeys([*ent.compared_fields(), *ent.embed_fields()])
                               if ent.fields.get(f) == "str"])
    free_vectors: dict[str, np.ndarray | None] = {f: None for f in free}
    if ent.matching.enabled and len(ent.sources) > 1:
        joined = [f for f in ent.embed_fields() if f not in free]
        vectors, n_embedded = embed_records(record_texts(records, joined), encoder, cache)
        for f in free:
            if f in ent.embed_fields():
                free_vectors[f], more = embed_records(record_texts(records, [f]), encoder, cache)
                n_embedded += more
    else:
        vectors = np.zeros((len(records), 1), dtype=np.float32)
    timings["embed_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if ent.matching.enabled and len(ent.sources) > 1:
        matched, candidates, thresholds, review, models = _match_pairs(records, vectors, ent, labels,
                                                                       free_vectors)
    else:
        matched, candidates, thresholds, review, models = _match_pairs(records.iloc[:0], vectors[:0], ent)
    links = pd.concat([key_links(records, ent.link_keys), matched], ignore_index=True)
    timings["match_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labels, links = cluster(records["_source"].tolist(), links, ent.matching.max_cluster_size)
    records[ENTITY_COLUMN] = entity_ids(records, labels)
    timings["cluster_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    touched = records[ENTITY_COLUMN].unique()
    reused = pd.Index([])
    if previous is not None and ENTITY_COLUMN in previous.records:
        now, before = _signatures(records), _signatures(previous.records)
        same = now.index.intersection(before.index)
        unchanged = same[(now.loc[same] == before.loc[same]).to_numpy()]
        reused = unchanged.intersection(pd.Index(previous.entities[id_col]))
        touched = now.index.difference(reused).to_numpy()
    todo = records[records[ENTITY_COLUMN].isin(touched)]
    fused, provenance = resolve(todo.reset_index(drop=True), todo[ENTITY_COLUMN].reset_index(drop=True),
                                ent, id_col)
    if len(reused):
        fused = pd.concat([previous.entities[previous.entities[id_col].isin(reused)], fused],
                          ignore_index=True)
        provenance = pd.concat([previous.provenance[previous.provenance[id_col].isin(reused)],
                                provenance], ignore_index=True)
    fused = fused.sort_values(id_col, kind="stable").reset_index(drop=True)
    provenance = provenance.sort_values([id_col, "field"], kind="stable").reset_index(drop=True)
    timings["resolve_s"] = time.perf_counter() - t0

    stats = {
        "records": int(len(records)),
        "records_per_source": records["_source"].value_counts().sort_index().to_dict(),
        "entities": int(len(fused)),
        "entities_resolved": int(len(touched)),
        "entities_reused": int(len(reused)),
        "texts_embedded": int(n_embedded),
        "candidate_pairs": int(len(candidates)),
        "links_accepted": int(links["accepted"].sum()) if len(links) else 0,
        "links_refused": int((~links["accepted"]).sum()) if len(links) else 0,
        "thresholds": thresholds,
        "labels_used": int(review["answer"].notna().sum()) if len(review) else 0,
        **{k: round(v, 3) for k, v in timings.items()},
    }
    return FusionResult(
        entities=fused,
        provenance=provenance,
        links=_named(records, links, ["score", "rule", "accepted", "refused_because"]),
        candidates=_named(records, candidates, []),
        records=records,
        vectors=cache,
        stats=stats,
        pairs=review,
        models=models,
    )
