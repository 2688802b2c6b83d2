"""Source = table = index: the comparison behind `jammi verify` and the blocking check
`source_table_parity` on every embeddings asset.

missing: a validated key with text that the table lacks; stale: a key whose table row has
another content hash; orphan: a table row whose key is no longer in the source; unindexed: a
current row whose segment has no usable HNSW sidecar (search scores it exactly meanwhile).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from jammi.quality.outcome import MAX_EXAMPLES, CheckOutcome
from jammi.spec.project import IndexSpec
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
            spec: IndexSpec) -> Parity:
    table = read_current(tables_dir, version, ["_content_hash"])
    current = dict(zip(table.column("_row_id").to_pylist(), table.column("_content_hash").to_pylist(),
                       strict=True))
    source = dict(zip(keys, hashes, strict=True))
    missing = [k for k in source if k not in current]
    stale = [k for k, h in source.items() if k in current and current[k] != h]
    orphan = [k for k in current if k not in source]
    unindexed = VersionIndex(tables_dir, version, dimensions, spec).unindexed_rows
    examples = [f"missing {k}" for k in missing] + [f"stale {k}" for k in stale] + [
        f"orphan {k}" for k in orphan]
    return Parity(len(missing), len(stale), len(orphan), unindexed, tuple(examples[:MAX_EXAMPLES]))


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
