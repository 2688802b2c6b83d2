"""One sink run: bring the store up to the table's current version, check it, and switch the
stable name when a new Jammi table (or layout) has been filled and passed its check.

The store table that holds the target's Jammi table gets the change from the version it records
to the target version (the versions it has not applied, as one change: upserts of added and
changed rows, deletes of deleted rows); a store table that records no version gets every row;
one whose state is pending, that does not serve yet, or whose recorded version's files are
gone, is compared with the table row by row. The state recorded with the change makes a rerun
apply nothing again, and a run killed half-way leaves the store at the version it recorded (or
pending)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from jammi.errors import ArtifactError
from jammi.sinks.parity import SinkParity, compare
from jammi.sinks.rows import Change, diff, store_batches, store_schema, version_keys, with_column_updates
from jammi.sinks.state import Applied, SlotState, Store, layout_of, slot_key
from jammi.tables.versions import Version, check_files

HOW_UNCHANGED = "unchanged"  # the store already held the target version
HOW_VERSIONS = "versions"  # the change between the recorded version and the target, from the table's files
HOW_FILLED = "filled"  # a new store table, every row
HOW_COMPARED = "compared"  # state pending or its version gone: the store's rows compared with the table's


@dataclass
class SyncResult:
    store_table: str  # the slot written
    serving_table: str  # the slot the stable name serves after the run
    jammi_table: str
    from_version: int | None
    version: int
    how: str
    upserted: int = 0  # as the store counted them
    deleted: int = 0
    column_updates: int = 0
    switched: bool = False
    parity: SinkParity = field(default_factory=lambda: SinkParity(0, 0, 0, 0))
    rows: int = 0
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)


def _readable(tables_dir: Path, version: Version | None, label: str) -> bool:
    if version is None:
        return False
    try:
        check_files(tables_dir, version, label)
    except ArtifactError:
        return False
    return True


def sync(store: Store, *, tables_dir: Path, table_name: str, target: Version, versions: Mapping[int, Version],
         frame: pa.Table | None, dimensions: int, full: bool = False, label: str = "") -> SyncResult:
    """Bring `store` to `target` (a version of Jammi table `table_name`); `frame`: the selected
    columns (jammi.sinks.rows.frame_columns) or None; `full`: compare with the store's rows
    whatever its state says."""
    t0 = time.perf_counter()
    steps: dict[str, float] = {}
    schema = store_schema(dimensions, frame)
    layout = layout_of(schema)
    target_keys = version_keys(tables_dir, target)
    serving = store.serving()
    state: SlotState | None
    if serving is not None and serving.holds(table_name, layout):
        slot, state = serving.slot, serving
    else:
        slot = store.slot_for(slot_key(table_name, layout))
        state = store.states().get(slot)
    fresh = state is None or not state.holds(table_name, layout)
    held, store_held = None, None
    base = None if state is None or fresh else versions.get(state.version)
    if state is None or fresh:
        how = HOW_FILLED
    elif (base is None or full or state.pending or state is not serving
          or not _readable(tables_dir, base, label)):
        # a store table not serving yet may have failed its check: compared, never trusted
        how, held = HOW_COMPARED, store.rows(slot)
        store_held = held
    else:
        how = HOW_VERSIONS if state.version != target.version else HOW_UNCHANGED
        held = target_keys if state.version == target.version else version_keys(tables_dir, base)
    change = diff(target_keys, held) if not fresh else Change(target_keys, [])
    if frame is not None and not fresh:
        store_held = store_held if store_held is not None else store.rows(slot)
        change = with_column_updates(change, target_keys, frame, store_held)
    steps["plan_s"] = time.perf_counter() - t0
    result = SyncResult(slot, slot, table_name, None if state is None or fresh else state.version,
                        target.version, how,
                        column_updates=change.column_updates, rows=target_keys.num_rows)
    new_state = SlotState(slot, table_name, layout, target.version, target_keys.num_rows,
                          serving=bool(state and state.serving and not fresh))
    t1 = time.perf_counter()
    if state is None or fresh or state.pending or state.version != target.version or not change.empty:
        applied = store.apply(slot, schema, store_batches(tables_dir, change.upserts, frame, schema),
                              change.deletes, state, new_state, fresh, index=True)
    else:
        applied = Applied()
    result.upserted, result.deleted = applied.upserted, applied.deleted
    if how == HOW_UNCHANGED and not change.empty:
        result.how = HOW_VERSIONS  # columns only
    steps["apply_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    result.parity = compare(store.rows(slot), target_keys, frame)
    steps["check_s"] = time.perf_counter() - t2
    filled_beside = serving is None or serving.slot != slot or not serving.holds(table_name, layout)
    if filled_beside and result.parity.clean:
        t3 = time.perf_counter()
        store.switch(slot, new_state)
        now = store.serving() or new_state
        result.switched, result.serving_table = True, now.slot
        if now.slot != slot:  # the rows were copied under the stable name: check what serves
            result.parity = compare(store.rows(now.slot), target_keys, frame)
        for other in store.states():
            if other not in (now.slot, slot, serving.slot if serving else None, store.stable):
                store.drop(other)
        steps["switch_s"] = time.perf_counter() - t3
    elif serving is not None and serving.slot != slot:
        result.serving_table = serving.slot  # the new table failed its check: the old one serves on
    result.seconds = time.perf_counter() - t0
    result.steps = {k: round(v, 3) for k, v in steps.items()}
    return result
