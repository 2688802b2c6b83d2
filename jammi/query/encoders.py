"""Which encoder turns a search's query text into a vector: the one that made the table's vectors
(its manifest names the backend), torch-free from the cached export when there is one."""

from __future__ import annotations

from collections.abc import Callable

from jammi.spec.project import Project
from jammi.tables.catalog import TableRecord
from jammi.tables.contract import read_manifest


def query_loader(project: Project, rec: TableRecord) -> Callable[[str], object]:
    """A loader (model id -> encoder) for queries of `rec`: jammi.embedding.query.load_query_encoder
    with the table's backend and the project's artifact directory."""
    from jammi.embedding.query import load_query_encoder

    backend = (read_manifest(rec.base_path) or {}).get("model_backend", "torch")
    return lambda model_id: load_query_encoder(model_id, "auto", backend, project.artifact_dir)
