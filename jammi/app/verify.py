"""The reconciler behind `jammi verify`: for each pipeline's active table, is source = table =
index? Counts of missing, stale, orphan and unindexed rows (see jammi.tables.parity), or the
problem that keeps the table from being read at all; then, for each of its sinks, is store =
table (jammi.sinks.parity)?"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from jammi import keys, store
from jammi.errors import ArtifactError, JammiError
from jammi.shared import frame_path, is_folder, stored_frame
from jammi.spec.project import Project
from jammi.tables.build import partition_rows
from jammi.tables.catalog import Catalog
from jammi.tables.contract import manifest_index_spec
from jammi.tables.frame_checksums import check_frame
from jammi.tables.frames import stored_partitions
from jammi.tables.parity import Parity, compare
from jammi.tables.refresh import source_rows
from jammi.tables.versions import DamagedFile, Version, check_files

COLUMNS = ["pipeline", "sink", "table_name", "version", "missing", "stale", "orphan", "unindexed", "problem"]


@dataclass(frozen=True)
class Verification:
    pipeline: str
    table_name: str = ""
    version: int | None = None
    parity: Parity | None = None
    problem: str = ""
    sink: str = ""  # a sink's row: table_name is then the store table its stable name serves
    damaged: str = ""  # the damaged file of the table, if any
    intact: int | None = None  # a damaged file: the newest earlier version whose files all read
    rewrite: tuple[str, ...] = ()  # a damaged input frame: the assets that write it again

    @property
    def clean(self) -> bool:
        return not self.problem and self.parity is not None and self.parity.clean

    @property
    def needs_rebuild(self) -> bool:
        """The table cannot be read as recorded: only a full rebuild repairs it."""
        return bool(self.problem) and bool(self.table_name) and not self.sink and not self.rewrite

    @property
    def repair_assets(self) -> list[str]:
        """What `--repair` materializes: the pipeline's table and index, or the sink (comparing
        every store row with the table); a damaged input frame is written again from its source
        first."""
        if self.sink:
            return [keys.sink(self.pipeline, self.sink)]
        return [*self.rewrite, *keys.pipeline_assets(self.pipeline)]

    @property
    def repair_full(self) -> bool:
        """A full rebuild; not where an intact earlier version can be refreshed forward instead."""
        return (self.needs_rebuild and self.intact is None) or bool(self.sink)

    def row(self) -> dict:
        counts = self.parity.counts() if self.parity else dict.fromkeys(("missing", "stale", "orphan",
                                                                          "unindexed"))
        return {"pipeline": self.pipeline, "sink": self.sink, "table_name": self.table_name,
                "version": self.version,
                **counts, "problem": self.problem}


def verify_pipeline(project: Project, pipeline: str) -> Verification:
    pipe = project.pipelines[pipeline]
    src = project.frame_spec(project.pipeline_input(pipeline))
    asset = project.frame_asset(project.pipeline_input(pipeline))
    frame = stored_frame(project.artifact_dir, asset)
    rec = Catalog(project.artifact_dir).active(pipeline=pipeline)
    if frame is None:
        return Verification(pipeline, rec.table_name if rec else "",
                            problem=f"{store.name_of(frame_path(project.artifact_dir, asset))} is not "
                                    "materialized")
    if rec is None:
        return Verification(pipeline, problem="no ready embedding table")
    try:
        check_frame(project.artifact_dir, asset, frame, fresh=True)
    except ArtifactError as err:  # written again from its source by --repair, then refreshed
        return Verification(pipeline, rec.table_name, rec.current_version, problem=str(err),
                            rewrite=tuple(keys.frame_assets(project, project.pipeline_input(pipeline))))
    catalog = Catalog(project.artifact_dir)
    try:
        version = catalog.current_version(rec)
        try:
            check_files(rec.tables_dir, version, pipeline, fresh=True)
            rows = (partition_rows(stored_partitions(frame), src.key, pipe.embedded_columns, rec.model_id)
                    if is_folder(frame) else source_rows(frame, src.key, pipe.embedded_columns, rec.model_id))
            parity = compare(*rows.arrow(), rec.tables_dir, version, rec.dimensions,
                             manifest_index_spec(rec.base_path), fresh=True)
        except DamagedFile as err:
            if err.pipeline is None:  # raised below the pipeline: name it in the fix
                err = DamagedFile(err.path, err.cause, pipeline)
            intact = newest_intact(catalog.versions(rec.table_name), version, rec.tables_dir, pipeline,
                                   err.name)
            return Verification(pipeline, rec.table_name, version.version, problem=str(err),
                                damaged=err.name, intact=intact)
    except ArtifactError as err:
        return Verification(pipeline, rec.table_name, rec.current_version, problem=str(err))
    return Verification(pipeline, rec.table_name, version.version, parity)


def newest_intact(versions: list[Version], current: Version, tables_dir, pipeline: str,
                  damaged: str) -> int | None:
    """The newest version before `current` that does not name the `damaged` file and whose
    files all read (check_files), None where there is none (the damaged file is the table's
    first segment, say: only a full rebuild repairs it)."""
    for older in sorted((v for v in versions if v.version < current.version), key=lambda v: -v.version):
        if any(ref.file == damaged for ref in (*older.segments, *older.deletes)):
            continue
        try:
            check_files(tables_dir, older, pipeline, fresh=True)
        except ArtifactError:
            continue
        return older.version
    return None


def verify(project: Project, pipelines: list[str] | None = None) -> list[Verification]:
    chosen = pipelines or list(project.pipelines)
    unknown = [p for p in chosen if p not in project.pipelines]
    if unknown:
        raise JammiError(f"unknown pipeline(s) {', '.join(map(repr, unknown))} "
                         f"(declared: {', '.join(project.pipelines)})")
    found = [verify_pipeline(project, p) for p in chosen]
    if any(project.pipelines[p].sinks for p in chosen):
        from jammi.app.sinks import verify_sinks  # a store's client loads only when a sink is declared

        found += [Verification(v.pipeline, v.store_table, v.version, Parity(
            **v.parity.counts(), unindexed=0, examples=v.parity.examples) if v.parity else None, v.problem,
            v.sink) for v in verify_sinks(project, chosen)]
    return found


def as_frame(found: list[Verification]) -> pd.DataFrame:
    return pd.DataFrame([v.row() for v in found], columns=COLUMNS)
