"""Crash recovery: settle tables left in `building` by a process that died.

Parquet missing -> failed; Parquet corrupt -> deleted, failed; Parquet valid and its
manifest saying its checks passed (the builder died between its checks and its switch) ->
ready with the counts and check outcomes the builder recorded, and its index rebuilt; Parquet
valid but its checks never finished -> deleted, failed (the next materialize builds it
again: a table serves only after the same checks as any other). Tables whose builder
process is still alive are left alone, so recovery is safe to run beside a live
materialization.

A promoted table becomes its pipeline's active table only when the pipeline serves no
ready table: a build that died before its switch must not displace the table in service
(the table that served is pinned as active instead, for catalogs from before the pointer).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from jammi import keys, store
from jammi.quality.outcome import CheckOutcome, blocking_failures
from jammi.storage import remove_leftovers, tmp_files
from jammi.tables.catalog import (
    STATUS_BUILDING,
    STATUS_FAILED,
    STATUS_READY,
    Catalog,
    TableRecord,
    process_start,
)
from jammi.tables.contract import manifest_index_spec, read_manifest, sidecar, verify_parquet
from jammi.tables.index import IndexStats, build_index, segment_base
from jammi.tables.versions import FileRef, Version

log = logging.getLogger(__name__)
LEFTOVER_REMOVED = "removed: temporary file of a dead process"


@dataclass(frozen=True)
class RecoveryAction:
    table_name: str
    action: str  # "failed: parquet missing" | "failed: parquet corrupt" | "ready: promoted, ..."
    detail: str = ""


def builder_alive(builder: str | None) -> bool:
    if not builder:
        return False
    host, _, rest = builder.partition(":")
    pid_s, _, started = rest.partition(":")
    if host != socket.gethostname():
        return True  # another machine's process: not ours to judge
    if started.startswith("t"):  # clock ticks since boot (catalog.process_start): exact
        if not pid_s.isdigit():
            return False
        found = process_start(int(pid_s))
        return found is not None and found[0] != "Z" and found[1] == started[1:]
    import psutil  # here: a search that needs no recovery does not load it

    try:
        proc = psutil.Process(int(pid_s))
        # a wall-clock start time: the boot time it derives from can move by a whole second
        return proc.status() != psutil.STATUS_ZOMBIE and (
            not started or abs(proc.create_time() - float(started)) < 2.0
        )
    except (psutil.NoSuchProcess, ValueError):
        return False


def _swept(catalog: Catalog) -> list[RecoveryAction]:
    return [RecoveryAction(str(path.relative_to(catalog.artifact_dir)), LEFTOVER_REMOVED)
            for path in _remove_leftovers(catalog)]


def _remove_leftovers(catalog: Catalog) -> list:
    """Temporary files and part folders that writers now dead left under the artifact
    directory (a write killed, or failed on a full disk before it could clean up)."""
    root = catalog.artifact_dir
    return remove_leftovers(root) if root.is_dir() else []


def owned(catalog: Catalog, rec: TableRecord) -> bool:
    """Recovery deletes only files inside the artifact directory's tables folder that follow
    the table naming: a catalog row pointing anywhere else (hand-edited, say) is never obeyed."""
    if store.is_url(catalog.tables_dir) or store.is_url(rec.parquet_path):
        return str(rec.parquet_path) == str(store.join(catalog.tables_dir, f"{rec.table_name}.parquet"))
    tables = Path(catalog.tables_dir).resolve()
    path = Path(rec.parquet_path).resolve()
    return path.parent == tables and path.name == f"{rec.table_name}.parquet"


def _discard(rec: TableRecord) -> None:
    store.delete(rec.parquet_path)
    for suffix in (".usearch", ".rowmap", ".manifest.json"):
        store.delete(sidecar(rec.base_path, suffix))
    name = rec.table_name  # a building table has no version: these are its unfinished segments
    for pattern in (f"{name}.v*", f".{name}.v*"):
        for other in store.listdir(rec.tables_dir, pattern):
            store.delete(other)


def recover(catalog: Catalog) -> list[RecoveryAction]:
    if not catalog.exists():
        return _swept(catalog)
    catalog.ensure_published()  # a writer killed after its commit, before its publish
    actions = []
    for rec in catalog.tables(status=STATUS_BUILDING):
        if builder_alive(rec.builder):
            continue
        final = rec.parquet_path
        if not owned(catalog, rec):
            catalog.set_status(rec.table_name, STATUS_FAILED, error="recovery: its Parquet path is not "
                               "a table file under the artifact directory; no file was touched")
            actions.append(RecoveryAction(rec.table_name, "failed: path outside the tables directory"))
            continue
        if not store.is_url(final):
            for tmp in tmp_files(Path(final)):  # its builder is dead: whatever it was writing is left over
                tmp.unlink(missing_ok=True)
        if not store.exists(final):
            store.delete(sidecar(rec.base_path, ".manifest.json"))
            catalog.set_status(rec.table_name, STATUS_FAILED,
                               error="recovery: Parquet missing after an interrupted build")
            actions.append(RecoveryAction(rec.table_name, "failed: parquet missing"))
            continue
        manifest = read_manifest(rec.base_path) or {}
        refs = tuple(FileRef.from_json(r) for r in manifest.get("segments") or [])
        try:
            rows = sum(verify_parquet(store.join(rec.tables_dir, ref.file), rec.dimensions)
                       for ref in refs) if refs else verify_parquet(final, rec.dimensions)
        except Exception as err:  # pyarrow raises several types on damaged files
            _discard(rec)
            catalog.set_status(rec.table_name, STATUS_FAILED,
                               error=f"recovery: corrupt Parquet deleted ({err})"[:2000])
            actions.append(RecoveryAction(rec.table_name, "failed: parquet corrupt", str(err)))
            continue
        outcomes = [CheckOutcome(**o) for o in manifest.get("checks") or []]
        if manifest.get("status") != STATUS_READY or not outcomes or blocking_failures(outcomes) or (
                manifest.get("count") != rows):
            _discard(rec)
            catalog.set_status(rec.table_name, STATUS_FAILED, error="recovery: the build stopped before "
                               "its quality checks finished; files deleted, the next materialize "
                               "builds the table again")
            actions.append(RecoveryAction(rec.table_name, "failed: checks never finished",
                                          f"{rows} rows written, unchecked"))
            continue
        spec = manifest_index_spec(rec.base_path)
        built = [build_index(segment_base(rec.tables_dir, ref), rec.dimensions, spec) for ref in refs] or [
            build_index(rec.base_path, rec.dimensions, spec)]
        stats = IndexStats(built[0].path, rows, sum(b.seconds for b in built), sum(b.bytes for b in built))
        catalog.record_sidecars(rec.table_name, [d for b in built for d in b.digests])
        counts = {k: int(manifest.get(k) or 0) for k in ("rows_skipped", "rows_failed", "rows_truncated")}
        first = Version(rec.table_name, 0, refs, rows=rows) if refs else None
        made_active = catalog.activate(rec.table_name, only_if_none=True, first=first, rows_embedded=rows,
                                       **counts,
                                       error="recovery: promoted from building after its checks passed")
        catalog.record_checks(None, keys.embeddings(rec.pipeline), None, outcomes)
        detail = f"{rows} rows, index in {stats.seconds:.1f}s"
        actions.append(RecoveryAction(rec.table_name, "ready: promoted, index rebuilt",
                                      detail + ("; now active" if made_active else
                                                f"; {rec.pipeline}'s active table unchanged")))
    actions += _swept(catalog)  # after the tables: a dead builder's own files are settled with it
    for action in actions:
        log.warning("recovery: %s %s %s", action.table_name, action.action, action.detail)
    return actions
