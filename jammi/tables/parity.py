"""Source = table = index: the comparison behind `jammi verify` and the blocking check
`source_table_parity` on every embeddings asset.

missing: a validated key with text that the table lacks; stale: a key whose table row has
another content hash; orphan: a table row whose key is no longer in the source; unindexed: a
current row whose segment has no usable HNSW sidecar (search scores it exactly meanwhile).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from jammi.quality.outcome import MAX_EXAMPLES, CheckOutcome
from jammi.spec.project import IndexSpec
from jammi.tables.contract import PARTITION_COLUMN
from jammi.tables.index import VersionIndex
from jammi.tables.versions import Version, read_current

SOURCE_TABLE_PARITY = "source_table_parity"


@dataclass(frozen=True)
class Parity:
    missing: int
    stale: int
    orphan: int
    unindexed: int
    examples: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not (self.missing or self.stale or self.orphan or self.unindexed)

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k != "examples"}


def compare(keys: list[str], hashes: list[str], tables_dir: Path, version: Version, dimensions: int,
            spec: IndexSpec, partition: str | None = None) -> Parity:
    """Source rows (`keys`, `hashes`) against the version's current rows: all of them, or, with
    `partition`, the rows of that partition (the source rows are then the partition's).
    Joined in DuckDB over Arrow, so no per-row Python object is made."""
    import duckdb

    columns = ["_content_hash", *([PARTITION_COLUMN] if partition is not None else [])]
    table = read_current(tables_dir, version, columns)
    if partition is not None:
        import pyarrow.compute as pc

        table = table.filter(pc.equal(table.column(PARTITION_COLUMN), partition))
    current = table.select(["_row_id", "_content_hash"])  # noqa: F841 - read by DuckDB below
    source = pa.table({"k": pa.array(keys, pa.string()), "h": pa.array(hashes, pa.string())})  # noqa: F841
    kind = ("CASE WHEN c._row_id IS NULL THEN 0 WHEN s.k IS NULL THEN 2 ELSE 1 END")
    differ = ("FROM source s FULL OUTER JOIN current c ON s.k = c._row_id "
              "WHERE s.k IS NULL OR c._row_id IS NULL OR s.h <> c._content_hash")
    with duckdb.connect() as con:
        con.execute("SET threads = 1")
        counts = dict(con.execute(f"SELECT {kind} AS kind, count(*) {differ} GROUP BY 1").fetchall())
        first = con.execute(f"SELECT {kind} AS kind, coalesce(s.k, c._row_id) AS key {differ} "
                            f"ORDER BY kind, key LIMIT {MAX_EXAMPLES}").fetchall()
    names = ("missing", "stale", "orphan")
    examples = tuple(f"{names[k]} {key}" for k, key in first)
    unindexed = VersionIndex(tables_dir, version, dimensions, spec).unindexed_rows
    return Parity(counts.get(0, 0), counts.get(1, 0), counts.get(2, 0), unindexed, examples)


def parity_check(parity: Parity, failed: int) -> CheckOutcome:
    """Blocking: no stale or orphan row, and no missing row beyond those that failed to encode.
    Unindexed rows are reported (the index asset builds what is missing) but do not fail it."""
    passed = parity.stale == 0 and parity.orphan == 0 and parity.missing == failed
    bad = parity.missing - failed + parity.stale + parity.orphan
    return CheckOutcome(
        SOURCE_TABLE_PARITY, passed, "error", float(bad), 0.0,
        f"missing {parity.missing} (failed to encode: {failed}), stale {parity.stale}, "
        f"orphan {parity.orphan}, unindexed {parity.unindexed}",
        examples=list(parity.examples), details=parity.counts())
