"""The embedding-table contract: file names, Arrow schema, manifest, and integrity.

{artifact_dir}/jammi_db/{source}__embedding__{model_short}__{YYYYMMDDTHHMMSS}
  .parquet (source of truth) .usearch .rowmap .manifest.json (disposable sidecars)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from jammi import store
from jammi.embedding.model_files import model_short_name
from jammi.errors import ArtifactError
from jammi.spec.project import IndexSpec
from jammi.store import Location

SUFFIXES = (".parquet", ".usearch", ".rowmap", ".manifest.json")
CONTRACT_COLUMNS = ("_row_id", "_source_id", "_model_id", "vector", "_content_hash")
# a chunked pipeline's tables carry, after the contract columns, the key of each chunk's document
DOC_ID_COLUMN = "_doc_id"
# a partitioned source's tables carry the partition each row belongs to: a partition's run reads,
# diffs and replaces only the rows of its partition
PARTITION_COLUMN = "_partition"
ROW_GROUP_ROWS = 16384  # rows per Parquet row group of a segment: what one read of some rows costs


def table_schema(dimensions: int, doc_ids: bool = False, partitions: bool = False) -> pa.Schema:
    """The contract columns; with `doc_ids`, a chunk table's `_doc_id` after them; with
    `partitions`, a partitioned source's table's `_partition` (the partition each row came from)."""
    return pa.schema(
        [
            pa.field("_row_id", pa.string(), nullable=False),
            pa.field("_source_id", pa.string(), nullable=False),
            pa.field("_model_id", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dimensions), nullable=False),
            pa.field("_content_hash", pa.string(), nullable=False),
            *([pa.field(DOC_ID_COLUMN, pa.string(), nullable=False)] if doc_ids else []),
            *([pa.field(PARTITION_COLUMN, pa.string(), nullable=False)] if partitions else []),
        ]
    )


def new_table_name(tables_dir: Location, source: str, model_id: str, taken: set[str]) -> str:
    """A timestamped name not used by any file or catalog entry (seconds step on clash)."""
    ts = datetime.now(UTC).replace(microsecond=0)
    while True:
        name = f"{source}__embedding__{model_short_name(model_id)}__{ts:%Y%m%dT%H%M%S}"
        if name not in taken and not any(store.exists(store.join(tables_dir, name + s)) for s in SUFFIXES):
            return name
        ts += timedelta(seconds=1)


def sidecar(base: Location, suffix: str) -> Location:
    """`<base><suffix>`: one of a table's or a segment's files (a URL for an object store's)."""
    if store.is_url(base):
        return f"{base}{suffix}"
    base = Path(base)
    return base.parent / f"{base.name}{suffix}"


def read_manifest(base: Location) -> dict:
    try:
        return json.loads(store.read_text(sidecar(base, ".manifest.json")))
    except (OSError, ValueError, ArtifactError):
        return {}


def write_manifest(base: Location, manifest: dict) -> None:
    """`<base>.manifest.json`, replaced whole (an object store's PUT replaces an object at once)."""
    store.write_text(sidecar(base, ".manifest.json"), json.dumps(manifest, indent=2, default=str))


def verify_parquet(path: Location, dimensions: int | None = None) -> int:
    """Read the whole file; return its row count or raise if it is corrupt or off-contract."""
    pf = store.parquet_file(path)
    names = pf.schema_arrow.names
    missing = [c for c in CONTRACT_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"missing contract column(s) {missing}")
    vtype = pf.schema_arrow.field("vector").type
    if not pa.types.is_fixed_size_list(vtype) or (dimensions and vtype.list_size != dimensions):
        raise ValueError(f"vector column has type {vtype}, expected FixedSizeList<float, {dimensions}>")
    rows = 0
    for batch in pf.iter_batches(batch_size=65536):
        rows += batch.num_rows
    if rows != pf.metadata.num_rows:
        raise ValueError("row count does not match the footer")
    return rows


def manifest_index_spec(base: Location) -> IndexSpec:
    """The index parameters a table was built with (defaults when the manifest is gone)."""
    data = read_manifest(base).get("index") or {}
    try:
        return IndexSpec.model_validate(data)
    except ValueError:
        return IndexSpec()
