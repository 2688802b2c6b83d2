"""A LanceDB sink: the stable table `<name>` users open, a staging table `<name>__<key>` that a
new Jammi table (or layout) is filled in first, and the state table `<name>__jammi` (slot, Jammi
table, version, layout, pending).

LanceDB commits one table at a time and its open-source edition cannot rename a table, so:
a change to the stable table is `merge_insert` (upserts, one commit) then `delete`, between a
state row marked pending and one that records the version; a run killed between the two finds
the state pending and compares the stable table with the Jammi table row by row. A staging table
that passed its checks replaces the stable table's rows in one overwrite commit (readers see
the old rows or the new ones), then is dropped; rolling back fills staging from the earlier
Jammi table the same way.

Store rows: `_row_id`, `_content_hash`, `_columns_hash`, `vector` (fixed size list of float32)
and the selected columns with the frame's Arrow types."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from jammi.errors import SinkError, SinkMoved
from jammi.redact import redact
from jammi.sinks.rows import COLUMNS_HASH
from jammi.sinks.state import Applied, SlotState
from jammi.spec.sinks import LanceSinkSpec

DELETE_CHUNK = 2_000
KEY_COLUMNS = ("_row_id", "_content_hash", COLUMNS_HASH)
STATE_SCHEMA = pa.schema([("slot", pa.string()), ("jammi_table", pa.string()), ("layout", pa.string()),
                          ("version", pa.int64()), ("rows", pa.int64()), ("serving", pa.bool_()),
                          ("pending", pa.bool_()), ("updated_at", pa.timestamp("us", tz="UTC"))])


def _quoted(ids: list[str]) -> str:
    return ", ".join("'" + i.replace("'", "''") + "'" for i in ids)


class LanceStore:
    kind = "lancedb"

    def __init__(self, spec: LanceSinkSpec, where: str, root: Path, secrets: tuple[str, ...] = ()):
        import lancedb

        self.spec, self.where, self.secrets = spec, where, secrets
        self.stable = self.name = spec.table
        uri = spec.uri if "://" in spec.uri else str((Path(root) / spec.uri).resolve())
        self.uri = uri
        try:
            self.db = lancedb.connect(uri)
        except Exception as err:  # lancedb raises its own and OSError/ValueError alike
            raise self._error(f"cannot open LanceDB at {uri}", err) from None

    def _error(self, what: str, err: BaseException) -> SinkError:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return SinkError(redact(f"{self.where}: {what}: {first}", self.secrets))

    def slot_for(self, key: str) -> str:
        return f"{self.name}__{key}"

    def close(self) -> None:
        pass

    def _names(self) -> set[str]:
        found = self.db.list_tables()
        return set(getattr(found, "tables", found))

    def _open(self, name: str):
        return self.db.open_table(name) if name in self._names() else None

    # --- state --------------------------------------------------------------------------

    def _state_table(self):
        name = f"{self.name}__jammi"
        return self._open(name) or self.db.create_table(name, schema=STATE_SCHEMA, exist_ok=True)

    def states(self) -> dict[str, SlotState]:
        table = self._open(f"{self.name}__jammi")
        if table is None:
            return {}
        rows = table.search().limit(None).to_arrow().to_pylist()
        return {r["slot"]: SlotState(r["slot"], r["jammi_table"], r["layout"], r["version"], r["rows"],
                                     r["serving"], r["pending"]) for r in rows}

    def serving(self) -> SlotState | None:
        return self.states().get(self.name)

    def _record(self, state: SlotState) -> None:
        row = pa.Table.from_pylist([{**dataclasses.asdict(state), "updated_at": datetime.now(UTC)}],
                                   schema=STATE_SCHEMA)
        (self._state_table().merge_insert("slot").when_matched_update_all().when_not_matched_insert_all()
         .execute(row))

    def _forget(self, slot: str) -> None:
        self._state_table().delete(f"slot = '{slot}'")

    # --- rows ---------------------------------------------------------------------------

    def apply(self, slot: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch], deletes: list[str],
              expected: SlotState | None, state: SlotState, fresh: bool, index: bool) -> Applied:
        found = self.states().get(slot)
        if found != expected:
            raise SinkMoved(f"{self.where}: {slot} changed since this run read it (now {found}); nothing "
                            "was applied; run again")
        reader = pa.RecordBatchReader.from_batches(schema, batches)
        try:
            if fresh:
                self._forget(slot)
                table = self.db.create_table(slot, data=reader, schema=schema, mode="overwrite")
                self._record(state)
                return Applied(table.count_rows(), 0)
            held = found or state
            self._record(SlotState(slot, held.jammi_table, held.layout, held.version, held.rows, held.serving,
                                   pending=True))
            table = self.db.open_table(slot)
            merged = (table.merge_insert("_row_id").when_matched_update_all().when_not_matched_insert_all()
                      .execute(reader))
            chunks = (deletes[start:start + DELETE_CHUNK] for start in range(0, len(deletes), DELETE_CHUNK))
            deleted = sum(getattr(table.delete(f"_row_id IN ({_quoted(ids)})"), "num_deleted_rows", 0)
                          for ids in chunks)
            self._record(state)
        except SinkError:
            raise
        except Exception as err:  # lancedb's errors share no base class
            raise self._error(f"writing {slot} failed (it is compared row by row next time)", err) from None
        upserted = (merged.num_inserted_rows or 0) + (merged.num_updated_rows or 0) if merged else 0
        return Applied(upserted, deleted)

    def rows(self, slot: str) -> pa.Table:
        table = self._open(slot)
        if table is None:
            return pa.table({n: pa.array([], pa.string()) for n in KEY_COLUMNS})
        return table.search().select(list(KEY_COLUMNS)).limit(None).to_arrow()

    # --- serving ------------------------------------------------------------------------

    def switch(self, slot: str, state: SlotState) -> None:
        """Overwrite the stable table with the staging table's rows in one commit."""
        if slot == self.name:
            self._record(SlotState(slot, state.jammi_table, state.layout, state.version, state.rows, True))
            return
        current = self.states().get(self.name)
        if current is not None:
            self._record(SlotState(self.name, current.jammi_table, current.layout, current.version,
                                   current.rows, True, pending=True))
        try:
            staged = self.db.open_table(slot)
            rows = staged.search().limit(None).to_batches()
            self.db.create_table(self.name, data=rows, schema=staged.schema, mode="overwrite")
        except Exception as err:
            raise self._error(f"switching {self.name} to {slot} failed", err) from None
        self._record(SlotState(self.name, state.jammi_table, state.layout, state.version, state.rows, True))
        self.drop(slot)

    def drop(self, slot: str) -> None:
        self._forget(slot)
        if slot in self._names():
            self.db.drop_table(slot)
