"""A pipeline's gold steps: bring its embedding table up to its validated rows (a refresh that
commits a version of the active table, or a new table made active once it passes its checks),
and build the missing HNSW sidecars of the active table's current version."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from jammi import keys, store
from jammi.app import memo
from jammi.embedding.model import Encoder
from jammi.embedding.query import prepare_query_export
from jammi.errors import ArtifactError, SourceError
from jammi.quality.outcome import CheckOutcome, outcome_json
from jammi.shared import frame_path, local_file, partition_dir, partition_path
from jammi.spec.project import Project
from jammi.store import Location
from jammi.tables import checks
from jammi.tables.bluegreen import prune_tables
from jammi.tables.build import EmbedStats, SourceRows, build_embedding_table, doc_column, partition_rows
from jammi.tables.catalog import STATUS_READY, Catalog, Snapshot, TableRecord, with_sidecars
from jammi.tables.contract import manifest_index_spec, read_manifest, sidecar
from jammi.tables.cost import unchanged_usage, usage_tokens
from jammi.tables.frame_checksums import check_frame
from jammi.tables.frames import stored_partitions
from jammi.tables.generation import generation_of, source_schema_version
from jammi.tables.index import IndexStats, VersionIndex, build_index, segment_base, sidecar_files
from jammi.tables.parity import SOURCE_TABLE_PARITY, compare, parity_check
from jammi.tables.recovery import RecoveryAction, recover
from jammi.tables.refresh import refresh_table, source_rows
from jammi.tables.versions import OUTCOME_NO_CHANGE, Counts, Version


@dataclass
class EmbeddingRun:
    stats: EmbedStats
    generation: str
    schema_version: str
    active_table: str  # the table search serves after this run
    recovered: list[RecoveryAction] = field(default_factory=list)


def _same_generation(catalog: Catalog, pipeline: str, generation: str) -> TableRecord | None:
    """The table drift is measured against: the active one when it is of `generation`, else
    the newest ready table of it."""
    active = catalog.active(pipeline=pipeline)
    if active is not None and active.generation == generation:
        return active
    return next((t for t in catalog.tables(pipeline=pipeline, status=STATUS_READY)
                 if t.generation == generation), None)


def embed_pipeline(project: Project, pipeline: str, encoder: Encoder,
                   progress: Callable[[str], None] | None = None,
                   run_id: str | None = None, full: bool = False,
                   partition: str | None = None, full_token: str | None = None) -> EmbeddingRun:
    """Bring `pipeline`'s table up to its stored validated (or fused) frame: refresh the active
    table in place when it is of the same generation (only added and changed rows reach the
    model, which loads only then), else build a new table beside it (blue/green). `full`
    forces the rebuild; with `full_token` (a backfill's id, say) only once: a table already
    rebuilt for the same token is refreshed instead, so the partitions of one `--full`
    backfill rebuild the table once. One process at a time writes a pipeline's tables (the
    pipeline lock).

    With `partition`, the run reads, diffs and commits that partition's rows alone (its own
    frame file; the table's rows carry their partition); only a new table (a first run or a
    new generation) is built from every partition stored so far."""
    catalog = Catalog(project.artifact_dir)
    with catalog.pipeline_lock(pipeline, progress):
        recovered = recover(catalog)
        frame_asset = project.frame_asset(project.pipeline_input(pipeline))
        if partition is not None:
            frame = partition_path(project.artifact_dir, frame_asset, partition)
            if not store.exists(frame):
                raise SourceError(f"pipeline {pipeline!r}: partition {partition!r} of {frame_asset} has "
                                  f"not been materialized ({frame} missing); materialize it first")
        else:
            frame = frame_path(project.artifact_dir, frame_asset)
            if not store.exists(frame):
                raise SourceError(f"pipeline {pipeline!r}: {frame_asset} has not been "
                                  f"materialized ({frame} missing); materialize it first")
        snap = catalog.snapshot(pipeline, frames=[frame])  # one read for what follows
        done = None if full else _unchanged(project, pipeline, catalog, snap, frame, partition, run_id,
                                            recovered)
        if done is not None:
            return done
        # never embed from a damaged frame
        check_frame(project.artifact_dir, frame_asset, frame, digests=snap.frame_digests)
        if partition is not None and not store.is_url(frame):  # a partition's own file: one writer
            run = _embed_frame(project, pipeline, encoder, catalog, progress, run_id, full, partition,
                               Path(frame), recovered, full_token)
        else:
            with local_file(frame) as frame_file:  # every read of the run sees one frame
                run = _embed_frame(project, pipeline, encoder, catalog, progress, run_id, full, partition,
                                   frame_file, recovered, full_token)
        if not run.stats.blocked_by:
            _remember(project, pipeline, catalog, frame, partition, run.stats)
        return run


def _embed_inputs(project: Project, pipeline: str, snap: Snapshot, frame: Location,
                  partition: str | None) -> tuple[Location, str] | None:
    """(memo marker, fingerprint) of what a run would compare: the frame file as written, the
    active table's current version and its files, the pipeline's spec."""
    active, version = snap.active, snap.version
    if active is None or version is None:
        return None
    files = [store.join(active.tables_dir, r.file) for r in (*version.segments, *version.deletes)]
    key = memo.fingerprint({"frame": memo.file_state(frame), "table": active.table_name,
                            "version": version.version, "files": [memo.file_state(f) for f in files],
                            # a sink's settings change nothing the table holds
                            "pipeline": project.pipelines[pipeline].model_dump(mode="json",
                                                                               exclude={"sinks"}),
                            "partition": partition})
    marker = store.join(active.tables_dir,
                        f"{active.table_name}.{pipeline}.{quote(partition or '-', safe='')}.embedded")
    return marker, key


def _remember(project: Project, pipeline: str, catalog: Catalog, frame: Location, partition: str | None,
              stats: EmbedStats) -> None:
    found = _embed_inputs(project, pipeline, catalog.snapshot(pipeline), frame, partition)
    if found is None:
        return
    marker, key = found
    memo.remember(marker, key, [], {
        "rows": stats.rows_embedded, "table_rows": stats.table_rows or stats.rows_embedded,
        "skipped": stats.rows_skipped, "failed": stats.rows_failed,
        "tokens": usage_tokens(stats.counts.usage),  # a provider's: what a run with no change avoids
        "outcomes": [outcome_json(o) for o in stats.outcomes
                     if o.name in (checks.ROW_COUNT, SOURCE_TABLE_PARITY)]})


def _unchanged(project: Project, pipeline: str, catalog: Catalog, snap: Snapshot, frame: Location,
               partition: str | None, run_id: str | None, recovered: list) -> EmbeddingRun | None:
    """The run's result without reading a row, when the frame and the table's current version
    are exactly what the last run of this pipeline (and partition) left: nothing can have
    changed, and what it checked (row count, parity) still holds. `snap`: the catalog read once
    for the memo's inputs and the result."""
    found = _embed_inputs(project, pipeline, snap, frame, partition)
    done = found and memo.recall(found[0], found[1], [])
    if not done:
        return None
    pipe = project.pipelines[pipeline]
    src = project.frame_spec(project.pipeline_input(pipeline))
    active, version = snap.active, snap.version
    assert active is not None and version is not None  # _embed_inputs found both
    stats = EmbedStats(active.table_name, active.parquet_path, active.model_id, active.dimensions or 0,
                       rows_in=done["rows"] + done["skipped"] + done["failed"], rows_embedded=done["rows"],
                       rows_skipped=done["skipped"], rows_failed=done["failed"], generation=active.generation,
                       version=version.version, table_rows=done["table_rows"], serving_rows=done["rows"])
    price = pipe.provider.price_per_million_tokens if pipe.provider else None
    usage = unchanged_usage(done.get("tokens", 0), price) if pipe.provider else None
    stats.counts = Counts(unchanged=done["rows"], outcome=OUTCOME_NO_CHANGE, usage=usage)
    kept = {o["name"]: CheckOutcome(**o) for o in done["outcomes"]}
    stats.outcomes = [*checks.vector_integrity_skipped(stats.dimensions), kept[checks.ROW_COUNT],
                      checks.row_drop(done["rows"], done["rows"], pipe.quality.min_row_ratio),
                      checks.drift_skipped(pipe.quality.drift_severity), kept[SOURCE_TABLE_PARITY]]
    catalog.log_refresh(pipeline, active.table_name, version.version, stats.counts,
                        checks=(run_id, keys.embeddings(pipeline), partition, stats.outcomes))  # one commit
    return EmbeddingRun(stats, active.generation, source_schema_version(src), active.table_name, recovered)


def _embed_frame(project: Project, pipeline: str, encoder: Encoder, catalog: Catalog,
                 progress: Callable[[str], None] | None, run_id: str | None, full: bool,
                 partition: str | None, frame_file: Path, recovered: list,
                 full_token: str | None) -> EmbeddingRun:
    pipe = project.pipelines[pipeline]
    rows_of = project.pipeline_input(pipeline)  # the source, entity or chunks it embeds
    source, src = project.embedding_source(rows_of), project.frame_spec(rows_of)
    generation = generation_of(pipe, src)
    active = catalog.active(pipeline=pipeline)
    if full and full_token and active is not None and (
            (read_manifest(active.base_path) or {}).get("full_token") == full_token):
        full = False  # another partition of this request rebuilt the table already
    refresh = active is not None and active.generation == generation and not full
    scope = partition if refresh else None  # a new table holds every partition

    @functools.cache
    def read_rows(model_id: str) -> SourceRows:
        if partition is not None and scope is None:
            folder = partition_dir(project.artifact_dir, project.frame_asset(rows_of))
            return partition_rows(stored_partitions(folder), src.key, pipe.embedded_columns, model_id,
                                  doc_column(pipe))
        rows = source_rows(frame_file, src.key, pipe.embedded_columns, model_id, doc_column(pipe))
        if partition is not None:
            rows.partitions = [partition] * len(rows.keys)
        return rows

    def row_count(stats: EmbedStats, model_id: str) -> list[CheckOutcome]:
        rows = read_rows(model_id)
        validated_rows = len(rows.keys) + rows.skipped
        return [checks.row_count(stats.rows_embedded, validated_rows, stats.rows_skipped, stats.rows_failed),
                checks.row_drop(stats.rows_embedded, stats.serving_rows, pipe.quality.min_row_ratio)]

    def parity(stats: EmbedStats, version: Version) -> CheckOutcome:
        rows = read_rows(stats.model_id)
        found = compare(*rows.arrow(), store.parent_of(stats.parquet_path), version,
                        stats.dimensions, pipe.index, scope)
        return parity_check(found, stats.rows_failed)

    if refresh:
        def verify_refresh(stats: EmbedStats, version: Version) -> list[CheckOutcome]:
            grew = version.segments != catalog.current_version(active).segments
            newest = store.join(active.tables_dir, version.segments[-1].file)
            integrity = (checks.vector_integrity(newest, stats.dimensions) if grew
                         else checks.vector_integrity_skipped(stats.dimensions))
            return [*integrity, *row_count(stats, active.model_id),
                    checks.drift_skipped(pipe.quality.drift_severity), parity(stats, version)]

        stats = refresh_table(catalog=catalog, rec=active, pipeline=pipeline, pipe=pipe, src=src,
                              source=source, frame_file=frame_file, encoder=encoder, progress=progress,
                              verify=verify_refresh, rows=read_rows(active.model_id), partition=scope)
        if stats.counts.outcome == OUTCOME_NO_CHANGE:
            version = catalog.current_version(active)
            stats.outcomes = [*checks.vector_integrity_skipped(stats.dimensions),
                              *row_count(stats, active.model_id),
                              checks.drift_skipped(pipe.quality.drift_severity),
                              parity(stats, version)]
    else:
        encoder.dimensions  # noqa: B018 - loads the model: a model that cannot load fails before any table
        previous = _same_generation(catalog, pipeline, generation)
        serving = active.rows_embedded if active is not None else 0

        def verify(stats: EmbedStats) -> list[CheckOutcome]:
            first = Version(stats.table_name, 0, stats.segments, rows=stats.rows_embedded)
            stats.serving_rows = serving
            return [
                *checks.segments_integrity([store.join(store.parent_of(stats.parquet_path), ref.file)
                                            for ref in stats.segments], stats.dimensions),
                *row_count(stats, encoder.model_id),
                checks.embedding_drift(stats.parquet_path, previous.parquet_path if previous else None,
                                       stats.dimensions, pipe.quality.max_centroid_shift,
                                       pipe.quality.drift_severity),
                parity(stats, first),
            ]

        stats = build_embedding_table(catalog=catalog, frame_file=frame_file, verify=verify,
                                      full_token=full_token, rows=read_rows(encoder.model_id),
                                      pipeline=pipeline, pipe=pipe, source=source, src=src,
                                      encoder=encoder, progress=progress)
        stats.table_rows = stats.rows_embedded
        if partition is not None:  # the run's materialization counts its own partition
            rows = read_rows(encoder.model_id)
            stats.rows_embedded = sum(1 for p in rows.partitions if p == partition) if rows.partitions else 0
        for gone in prune_tables(catalog, pipeline, pipe.keep_tables):
            if progress:
                progress(f"removed old table {gone.table_name} (keep_tables: {pipe.keep_tables})")
    if stats.rows_encoded and pipe.provider is None:  # the model is loaded: torch-free queries from now on
        prepare_query_export(pipe.model, pipe.backend, project.artifact_dir)
    catalog.record_checks(run_id, keys.embeddings(pipeline), partition, stats.outcomes)
    active = catalog.active(pipeline=pipeline)
    return EmbeddingRun(stats, generation, source_schema_version(src),
                        active.table_name if active else "", recovered)


@dataclass
class IndexRun:
    table: TableRecord
    stats: IndexStats
    recall: CheckOutcome


def index_pipeline(project: Project, pipeline: str, run_id: str | None = None,
                   partition: str | None = None) -> IndexRun:
    """Build the HNSW sidecar of `pipeline`'s active table and check its recall."""
    pipe = project.pipelines[pipeline]
    catalog = Catalog(project.artifact_dir)
    snap = catalog.snapshot(pipeline)
    rec, version = snap.active, snap.version
    if rec is None or version is None:
        raise ArtifactError(f"pipeline {pipeline!r} has no ready embedding table to index")
    spec = manifest_index_spec(rec.base_path)
    missing = VersionIndex(rec.tables_dir, version, rec.dimensions, spec).problems
    built = [build_index(segment_base(rec.tables_dir, ref), rec.dimensions, spec)
             for ref in version.segments if ref.file in missing]
    digests = [d for b in built for d in b.digests]  # recorded with the recall check, below
    version = with_sidecars(version, {**version.sidecar_digests, **dict(digests)})
    stats = IndexStats(sidecar(segment_base(rec.tables_dir, version.segments[-1]), ".usearch"),
                       version.rows, sum(b.seconds for b in built), sum(b.bytes for b in built))
    states = {ref.file: [memo.file_state(f) for f in sidecar_files(segment_base(rec.tables_dir, ref))]
              for ref in version.segments}
    quality = pipe.quality
    settings = {"index": spec.model_dump(), "min": quality.min_recall, "queries": quality.recall_queries}
    known = memo.read(rec.parquet_path) or {}  # each segment's recall, measured once per sidecar
    earlier = known.get("segments", {}) if known.get("settings") == settings else {}
    recall, measured = checks.ann_recall_by_segment(rec.tables_dir, version, rec.dimensions, spec, earlier,
                                                    states, quality.min_recall, quality.recall_queries)
    memo.write(rec.parquet_path, {"settings": settings, "segments": measured})
    catalog.record_checks(run_id, keys.ann_index(pipeline), partition, [recall],
                          sidecars=(rec.table_name, digests))
    return IndexRun(rec, stats, recall)
