"""What a store records about itself, in the store: per store table ("slot"), which Jammi table
and version it holds and with which layout (vector size and selected columns), and whether the
stable name serves it. A store changes a slot's rows and its state together (PostgreSQL: one
transaction), or marks the state `pending` first and clears it after (LanceDB, which has no
transaction over two tables): a pending slot is compared with the table row by row next time.

The contract every store implements is `Store`; jammi.sinks.sync drives it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa


def layout_of(schema: pa.Schema) -> str:
    """A fingerprint of a store row's layout (its fields and types): a new layout is a new slot."""
    text = json.dumps([[f.name, str(f.type)] for f in schema])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def slot_key(jammi_table: str, layout: str) -> str:
    """Eight hex characters naming the store table of one Jammi table in one layout."""
    return hashlib.sha256(f"{jammi_table}|{layout}".encode()).hexdigest()[:8]


@dataclass(frozen=True)
class SlotState:
    slot: str
    jammi_table: str
    layout: str
    version: int
    rows: int = 0
    serving: bool = False
    pending: bool = False  # a change began and was not recorded as finished: rows unknown

    def holds(self, jammi_table: str, layout: str) -> bool:
        return self.jammi_table == jammi_table and self.layout == layout


@dataclass(frozen=True)
class Applied:
    """What one change did in the store, as the store counted it."""

    upserted: int = 0
    deleted: int = 0


class Store(Protocol):
    """A serving store: a stable name users read, and slots Jammi fills."""

    kind: str
    stable: str  # the name users query

    def states(self) -> dict[str, SlotState]:
        """Every slot's recorded state."""

    def serving(self) -> SlotState | None:
        """The state of the slot the stable name serves, None before the first switch."""

    def slot_for(self, key: str) -> str:
        """The slot a new Jammi table (or layout) is filled in before it serves."""

    def apply(self, slot: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch], deletes: list[str],
              expected: SlotState | None, state: SlotState, fresh: bool, index: bool) -> Applied:
        """Upsert `batches`, delete `deletes` and record `state`, as one change; `expected` is
        the state the change was planned from (SinkMoved when the slot's is another); `fresh`:
        the slot is (re)created empty first."""

    def rows(self, slot: str) -> pa.Table:
        """`_row_id`, `_content_hash`, `_columns_hash` of every row of the slot."""

    def switch(self, slot: str, state: SlotState) -> None:
        """Make the stable name serve `slot` (whose rows passed their checks), atomically."""

    def drop(self, slot: str) -> None:
        """Remove a slot and its state."""

    def close(self) -> None:
        """Release connections."""
