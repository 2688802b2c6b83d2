"""Source = table = index: the comparison behind `jammi verify` and the blocking check
`source_table_parity` on every embeddings asset.

missing: a validated key with text that the table lacks; stale: a key whose table row has
another content hash; orphan: a table row whose key is no longer in the source; unindexed: a
current row whose segment has no usable HNSW sidecar (search scores it exactly meanwhile).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyarrow as pa

from jammi import store
from jammi.quality.outcome import MAX_EXAMPLES, CheckOutcome
from jammi.spec.project import IndexSpec
from jammi.store import Location
from jammi.tables.contract import PARTITION_COLUMN
from jammi.tables.index import VersionIndex
from jammi.tables.versions import Version, view_sql

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


def compare(keys: pa.Array, hashes: pa.Array, tables_dir: Location, version: Version, dimensions: int,
            spec: IndexSpec, partition: str | None = None, fresh: bool = False) -> Parity:
    """Source rows (`keys`, `hashes`: Arrow strings, as `SourceRows.arrow()` gives them) against
    the version's current rows: all of them, or, with `partition`, the rows of that partition
    (the source rows are then the partition's).
    Joined in DuckDB: the source rows as Arrow, the table's straight from its Parquet files
    (segments minus deletions), so the table is never held in memory. `fresh`: hash every
    sidecar against its recorded checksum (`jammi verify`), not only those this node has not."""
    import duckdb

    where = "" if partition is None else f" WHERE {PARTITION_COLUMN} = $partition"
    current = f"SELECT _row_id, _content_hash FROM ({view_sql(tables_dir, version)}){where}"
    source = pa.table({"k": keys, "h": hashes})  # noqa: F841
    kind = ("CASE WHEN c._row_id IS NULL THEN 0 WHEN s.k IS NULL THEN 2 ELSE 1 END")
    differ = (f"FROM source s FULL OUTER JOIN ({current}) c ON s.k = c._row_id "
              "WHERE s.k IS NULL OR c._row_id IS NULL OR s.h <> c._content_hash")
    params = {} if partition is None else {"partition": partition}
    with duckdb.connect() as con:  # the table's side is read from its files, a row group at a time
        con.execute("SET threads = 1")
        store.register_duckdb(con, [tables_dir])
        counts = dict(con.execute(f"SELECT {kind} AS kind, count(*) {differ} GROUP BY 1", params).fetchall())
        first = con.execute(f"SELECT {kind} AS kind, coalesce(s.k, c._row_id) AS key {differ} "
                            f"ORDER BY kind, key LIMIT {MAX_EXAMPLES}", params).fetchall()
    del source
    pa.default_memory_pool().release_unused()
    names = ("missing", "stale", "orphan")
    examples = tuple(f"{names[k]} {key}" for k, key in first)
    index = VersionIndex(tables_dir, version, dimensions, spec, fresh=fresh)
    examples += tuple(f"unindexed {segment}: {problem}" for segment, problem in sorted(index.problems.items())
                      if "missing" not in problem)  # a damaged sidecar is named; a missing one is the norm
    return Parity(counts.get(0, 0), counts.get(1, 0), counts.get(2, 0), index.unindexed_rows, examples)


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
