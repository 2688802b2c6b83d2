"""Which encoder turns a search's query text into a vector: the one that made the table's vectors
(its manifest names the backend, or the provider), torch-free from the cached export when there is
one; a provider table's queries go to the same service, each query text's vector kept."""

from __future__ import annotations

from collections.abc import Callable

from jammi.errors import SearchError
from jammi.spec.project import Project
from jammi.tables.catalog import TableRecord
from jammi.tables.contract import read_manifest


def query_loader(project: Project, rec: TableRecord) -> Callable[[str], object]:
    """A loader (model id -> encoder) for queries of `rec`: jammi.embedding.query.load_query_encoder
    with the table's backend and the project's artifact directory, or the pipeline's provider."""
    manifest = read_manifest(rec.base_path) or {}
    if manifest.get("provider"):
        return lambda _model_id: _provider(project, rec, manifest["provider"])
    from jammi.embedding.query import load_query_encoder

    backend = manifest.get("model_backend", "torch")
    return lambda model_id: load_query_encoder(model_id, "auto", backend, project.artifact_dir)


def _provider(project: Project, rec: TableRecord, made_by: dict):
    """The pipeline's provider when it is the one that embedded `rec` (the key comes from the
    project file, never from a table's files)."""
    from jammi.embedding.providers import query_provider

    pipe = project.pipelines.get(rec.pipeline)
    if pipe is None or pipe.provider is None or pipe.provider.identity != made_by:
        now = pipe.provider.identity if pipe is not None and pipe.provider is not None else "no provider"
        raise SearchError(f"table {rec.table_name} was embedded by provider {made_by}, but pipeline "
                          f"{rec.pipeline!r} now declares {now}; materialize the pipeline to build its "
                          "new table, or restore its provider block to search this one")
    return query_provider(pipe.provider, project.secrets)
