"""A pipeline's `sinks:` block: serving stores Jammi keeps exact, each its own asset
`<pipeline>_<sink>` downstream of the embeddings (jammi.sinks does the work).

    pipelines:
      products:
        source: products
        text_columns: [title]
        sinks:
          pg:    {kind: pgvector, dsn: "${SERVING_DSN}", table: public.product_vectors,
                  columns: [title, price], index: {method: hnsw, metric: cosine}}
          lance: {kind: lancedb, uri: artifacts/lance, table: products, columns: [price]}

`columns` are columns of the pipeline's input frame (the validated source, the fused entity or
the chunks) that travel with each vector, so the store can filter on them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# a store identifier Jammi makes names from: `<table>__<8 hex>`, `<table>__jammi` (<= 63 bytes in PostgreSQL)
STORE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,50}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class PgIndexSpec(_Strict):
    """The pgvector index on each store table: HNSW (default), IVFFlat or none."""

    method: Literal["hnsw", "ivfflat", "none"] = "hnsw"
    metric: Literal["cosine", "l2", "ip"] = "cosine"
    m: int = Field(default=16, ge=2, le=100)  # hnsw
    ef_construction: int = Field(default=64, ge=4, le=1000)  # hnsw
    lists: int = Field(default=100, ge=1)  # ivfflat


class PgvectorSinkSpec(_Strict):
    """PostgreSQL with pgvector: `table` (`schema.name`, default schema `public`) is a view over
    the store table of the active generation."""

    kind: Literal["pgvector"]
    dsn: str
    table: str
    columns: list[str] = []
    index: PgIndexSpec = PgIndexSpec()

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        schema, _, name = value.rpartition(".")
        for part in ([schema] if schema else []) + [name]:
            if not re.match(STORE_NAME, part):
                raise ValueError(f"{value!r}: expected name or schema.name, each a letter or _ then letters, "
                                 "digits or _ (at most 51 characters: Jammi adds a suffix to it)")
        return value

    @property
    def schema_name(self) -> str:
        return self.table.rpartition(".")[0] or "public"

    @property
    def table_name(self) -> str:
        return self.table.rpartition(".")[2]


class LanceSinkSpec(_Strict):
    """LanceDB: `table` in the database at `uri` (a folder, relative to jammi.yaml, or an object
    store URL)."""

    kind: Literal["lancedb"]
    uri: str
    table: str = Field(pattern=STORE_NAME)
    columns: list[str] = []


SinkSpec = Annotated[PgvectorSinkSpec | LanceSinkSpec, Field(discriminator="kind")]


def check_sink_columns(pipeline: str, sinks: dict, declared: list[str], what: str) -> None:
    """Every sink column is a column of the pipeline's input frame, named once."""
    for name, sink in sinks.items():
        for col in sink.columns:
            if col not in declared:
                raise ValueError(f"pipelines.{pipeline}.sinks.{name}.columns: {col!r} is not a column of "
                                 f"{what} (declared: {', '.join(declared)})")
            if col.startswith("_") or col in ("vector", "embedding"):
                raise ValueError(f"pipelines.{pipeline}.sinks.{name}.columns: {col!r} would clash with "
                                 "a column Jammi writes (_row_id, _content_hash, vector, embedding)")
        if len(set(sink.columns)) != len(sink.columns):
            raise ValueError(f"pipelines.{pipeline}.sinks.{name}.columns: a column is named twice")
