"""A pipeline's sinks as use cases: sync one (what the `<pipeline>_<sink>` asset runs) and verify
them all (what `jammi verify` adds to its table). A sink follows the pipeline's active table:
a refresh reaches it as the versions it has not applied, a new generation or a rollback as a
store table filled (or kept) beside the serving one and switched to once its check passes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jammi import keys
from jammi.errors import ArtifactError, JammiError
from jammi.quality.outcome import CheckOutcome
from jammi.shared import stored_frame
from jammi.sinks import open_store
from jammi.sinks.parity import SinkParity, compare, parity_check
from jammi.sinks.rows import frame_columns, store_schema, version_keys
from jammi.sinks.state import layout_of
from jammi.sinks.sync import SyncResult, sync
from jammi.spec.project import Project
from jammi.tables.catalog import Catalog, TableRecord
from jammi.tables.versions import Version, check_files


@dataclass
class SinkRun:
    pipeline: str
    sink: str
    kind: str
    stable: str  # the name users query
    result: SyncResult
    outcome: CheckOutcome


def _where(pipeline: str, sink: str) -> str:
    return f"pipeline {pipeline!r} sink {sink!r}"


def _target(project: Project, pipeline: str, catalog: Catalog) -> tuple[TableRecord, Version]:
    served = catalog.serving(pipeline=pipeline)
    if served is None:
        raise ArtifactError(f"pipeline {pipeline!r} has no ready embedding table; materialize "
                            f"{keys.embeddings(pipeline)} first")
    rec, version = served
    check_files(rec.tables_dir, version, pipeline)
    return rec, version


def _frame(project: Project, pipeline: str, sink: str):
    """The selected columns of the pipeline's input frame, with their hash (None without columns)."""
    columns = project.pipelines[pipeline].sinks[sink].columns
    if not columns:
        return None
    rows_of = project.pipeline_input(pipeline)
    asset = project.frame_asset(rows_of)
    path = stored_frame(project.artifact_dir, asset)
    if path is None:
        raise ArtifactError(f"{_where(pipeline, sink)}: {asset} is not materialized; its columns "
                            f"({', '.join(columns)}) travel with the vectors")
    spec = project.frame_spec(rows_of)
    if spec is None:
        raise ArtifactError(f"{_where(pipeline, sink)}: {rows_of!r} is not a source, entity or chunks frame")
    return frame_columns(path, spec.key, columns)


def sync_sink(project: Project, pipeline: str, sink: str, full: bool = False, run_id: str | None = None,
              partition: str | None = None, progress: Callable[[str], None] | None = None) -> SinkRun:
    """Bring sink `sink` of `pipeline` to the active table's current version, check it and
    record the check; `full`: compare every store row with the table whatever the store's state
    says (a repair). One run of a sink at a time (a lock per sink)."""
    spec = project.pipelines[pipeline].sinks[sink]
    catalog = Catalog(project.artifact_dir)
    asset = keys.sink(pipeline, sink)
    with catalog.pipeline_lock(f"{asset}.sink", progress):
        rec, version = _target(project, pipeline, catalog)
        frame = _frame(project, pipeline, sink)
        versions = {v.version: v for v in catalog.versions(rec.table_name)}
        store = open_store(spec, _where(pipeline, sink), project.root, project.secrets)
        try:
            result = sync(store, tables_dir=rec.tables_dir, table_name=rec.table_name, target=version,
                          versions=versions, frame=frame, dimensions=rec.dimensions or 0, full=full,
                          label=pipeline)
        finally:
            store.close()
    if progress:
        span = (f"v{result.version}" if result.from_version is None
                else f"v{result.from_version} -> v{result.version}")
        progress(f"{asset}: {result.how} {result.jammi_table} {span}: "
                 f"{result.upserted} upserted, {result.deleted} deleted"
                 + (f", switched {store.stable} to {result.serving_table}" if result.switched else ""))
    outcome = parity_check(result.parity, result.store_table)
    catalog.record_checks(run_id, asset, partition, [outcome])
    return SinkRun(pipeline, sink, spec.kind, store.stable, result, outcome)


@dataclass(frozen=True)
class SinkVerification:
    pipeline: str
    sink: str
    store_table: str = ""
    table_name: str = ""
    version: int | None = None
    parity: SinkParity | None = None
    problem: str = ""

    @property
    def clean(self) -> bool:
        return not self.problem and self.parity is not None and self.parity.clean


def verify_sink(project: Project, pipeline: str, sink: str) -> SinkVerification:
    """The store table the sink's stable name serves against the active table's current
    version (and the frame's columns): missing, stale and orphan rows, or what keeps it from
    being compared at all."""
    catalog = Catalog(project.artifact_dir)
    name = keys.sink(pipeline, sink)
    try:
        rec, version = _target(project, pipeline, catalog)
        frame = _frame(project, pipeline, sink)
        store = open_store(project.pipelines[pipeline].sinks[sink], _where(pipeline, sink), project.root,
                           project.secrets)
        try:
            serving = store.serving()
            if serving is None:
                return SinkVerification(pipeline, sink, table_name=rec.table_name, version=version.version,
                                        problem=f"{store.stable} serves nothing yet; materialize {name}")
            held = store.rows(serving.slot)
        finally:
            store.close()
        layout = layout_of(store_schema(rec.dimensions or 0, frame))
        problem = ""
        if not serving.holds(rec.table_name, layout):
            why = ("the sink's columns changed since" if serving.jammi_table == rec.table_name
                   else f"it serves {serving.jammi_table}")
            problem = f"{store.stable} does not serve the active {rec.table_name} ({why}); materialize {name}"
        parity = compare(held, version_keys(rec.tables_dir, version), frame)
    except JammiError as err:
        return SinkVerification(pipeline, sink, problem=str(err))
    return SinkVerification(pipeline, sink, serving.slot, rec.table_name, serving.version, parity, problem)


def verify_sinks(project: Project, pipelines: list[str]) -> list[SinkVerification]:
    return [verify_sink(project, p, s) for p in pipelines for s in project.pipelines[p].sinks]
