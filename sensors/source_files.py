"""A sensor that requests a refresh of a file source when its files change.

The cursor maps each source to a fingerprint of its files (names, sizes, mtimes). A run
key derived from the fingerprint makes a request idempotent across ticks.
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from jammi import keys
from jammi.errors import SourceError
from jammi.ingest.extract import source_files
from jammi.spec.project import Project

FILE_KINDS = ("csv", "parquet", "jsonl")


def fingerprint(project: Project, name: str) -> str | None:
    try:
        files = source_files(project, name, project.sources[name])
    except SourceError:
        return None
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def source_assets(project: Project, name: str) -> list[dg.AssetKey]:
    return [dg.AssetKey(k) for k in keys.assets_of(project, name)]


def changed_sources(project: Project, cursor: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    new_cursor, changed = dict(cursor), []
    for name, spec in project.sources.items():
        if spec.kind not in FILE_KINDS:
            continue
        fp = fingerprint(project, name)
        if fp is not None and cursor.get(name) != fp:
            changed.append(name)
            new_cursor[name] = fp
    return new_cursor, changed


def build_source_files_sensor(project: Project, job: dg.UnresolvedAssetJobDefinition):
    @dg.sensor(
        name="source_files_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Refreshes a file source's assets when its files change.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        new_cursor, changed = changed_sources(project, cursor)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"{name}:{new_cursor[name]}",
                    asset_selection=source_assets(project, name),
                    tags={"jammi/source": name},
                )
                for name in changed
            ],
            cursor=json.dumps(new_cursor, sort_keys=True),
        )

    return _sensor
