"""Store = table: the comparison behind `jammi verify` for sinks and the blocking check
`sink_parity` on every sink asset.

missing: a row of the table's current version that the store table lacks; stale: a store row
with another content hash than the table's, or (with selected columns) other column values than
the frame's now; orphan: a store row whose key the table no longer holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.compute as pc

from jammi.quality.outcome import MAX_EXAMPLES, CheckOutcome
from jammi.sinks.rows import COLUMNS_HASH

SINK_PARITY = "sink_parity"


@dataclass(frozen=True)
class SinkParity:
    missing: int
    stale: int
    orphan: int
    store_rows: int
    examples: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not (self.missing or self.stale or self.orphan)

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k in ("missing", "stale", "orphan")}


def compare(store: pa.Table, target: pa.Table, frame: pa.Table | None = None) -> SinkParity:
    """`store` (_row_id, _content_hash, _columns_hash) against `target` (the version's
    _row_id, _content_hash) and, when columns travel, `frame` (_row_id, _columns_hash)."""
    ids, held = target.column("_row_id"), store.column("_row_id")
    at = pc.index_in(ids, value_set=held)
    missing = pc.is_null(at)
    stale = pc.invert(pc.fill_null(pc.equal(store.column("_content_hash").take(at),
                                            target.column("_content_hash")), True))
    if frame is not None:
        want = frame.column(COLUMNS_HASH).take(pc.index_in(ids, value_set=frame.column("_row_id")))
        got = store.column(COLUMNS_HASH).take(at)
        differs = pc.and_(pc.and_(pc.is_valid(want), pc.is_valid(at)),
                          pc.invert(pc.fill_null(pc.equal(want, got), False)))
        stale = pc.or_(stale, differs)
    orphan = pc.invert(pc.is_in(held, value_set=ids))
    examples = ([f"missing {k}" for k in ids.filter(missing).to_pylist()[:MAX_EXAMPLES]]
                + [f"stale {k}" for k in ids.filter(stale).to_pylist()[:MAX_EXAMPLES]]
                + [f"orphan {k}" for k in held.filter(orphan).to_pylist()[:MAX_EXAMPLES]])
    count = lambda mask: int(pc.sum(mask).as_py() or 0)  # noqa: E731
    return SinkParity(count(missing), count(stale), count(orphan), store.num_rows,
                      tuple(examples[:MAX_EXAMPLES]))


def parity_check(parity: SinkParity, store_table: str) -> CheckOutcome:
    """Blocking: the store table holds exactly the table's current rows."""
    bad = parity.missing + parity.stale + parity.orphan
    return CheckOutcome(
        SINK_PARITY, parity.clean, "error", float(bad), 0.0,
        f"{store_table}: missing {parity.missing}, stale {parity.stale}, orphan {parity.orphan} "
        f"({parity.store_rows} rows)", examples=list(parity.examples), details=parity.counts())
