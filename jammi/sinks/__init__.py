"""Serving sinks: PostgreSQL with pgvector and LanceDB tables kept exact with a pipeline's
embedding table. Each run applies the versions the store has not applied yet (upserts of added
and changed rows, deletes of deleted rows), records in the store which version it holds, fills a
new store table for a new generation and switches the stable name to it once its check passes.

`open_store` is the one way to a store; the store modules import their client (psycopg and
pgvector, lancedb) only when a sink of their kind is used."""

from __future__ import annotations

from pathlib import Path

from jammi.errors import SinkError
from jammi.sinks.state import Store
from jammi.spec.sinks import LanceSinkSpec, PgvectorSinkSpec

__all__ = ["SinkError", "Store", "open_store"]


def open_store(spec: PgvectorSinkSpec | LanceSinkSpec, where: str, root: Path,
               secrets: tuple[str, ...] = ()) -> Store:
    """The store a sink's spec names (`where` names the sink in errors; `root`: what relative
    paths are relative to)."""
    missing = "psycopg and pgvector" if spec.kind == "pgvector" else "lancedb"
    try:
        if spec.kind == "pgvector":
            from jammi.sinks.pgvector import PgvectorStore

            return PgvectorStore(spec, where, secrets)
        from jammi.sinks.lance import LanceStore

        return LanceStore(spec, where, root, secrets)
    except ModuleNotFoundError as err:
        raise SinkError(f"{where}: the {spec.kind} sink needs {missing} (pip install 'jammi[sinks]'): "
                        f"{err}") from None
