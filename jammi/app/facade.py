"""A small Python facade over a project's artifact directory: search, SQL, status,
recovery, blue/green table management and raw inference, the same operations the `jammi`
CLI offers."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from jammi.errors import ArtifactError, JammiError
from jammi.query.sandbox import one_reading_statement, reading_catalog
from jammi.query.searcher import Searcher
from jammi.query.serving import EncoderLoader
from jammi.spec.project import Project, load_project
from jammi.tables.catalog import Catalog
from jammi.tables.recovery import RecoveryAction, recover

if TYPE_CHECKING:
    import pandas as pd


class Jammi:
    """Open a project (`--project`, $JAMMI_PROJECT or ./jammi.yaml); recovery runs first."""

    def __init__(self, project: str | os.PathLike | Project | None = None, *, recover_on_open=True,
                 loader: EncoderLoader | None = None):
        """`loader(model_id)` gives the query encoder, called once per model by this facade
        (default: the table's own backend, torch-free from its cached export; jammi.query.encoders)."""
        self.project = project if isinstance(project, Project) else load_project(project)
        self.catalog = Catalog(self.project.artifact_dir)
        self.recovered: list[RecoveryAction] = recover(self.catalog) if recover_on_open else []
        self.searcher = Searcher(self.project, self.catalog, loader)

    def search(self, name: str, query: str | None = None, **kwargs) -> pd.DataFrame:
        """See jammi.query.search.search: query text | vector= | row_key=, k, filter, select,
        exact, table. What it reads is kept for the next search until a new version is served
        (jammi.query.searcher)."""
        return self.searcher.search(name, query, **kwargs)

    def search_table(self, name: str, query: str | None = None, **kwargs) -> pa.Table:
        """`search`'s rows as an Arrow table (no documents): what `jammi search` prints."""
        return self.searcher.search_table(name, query, **kwargs)

    def search_many(self, name: str, queries, **kwargs) -> list[pd.DataFrame]:
        """`search` for each of `queries` (texts, or vectors as the rows of a 2-D array): one
        encode call, one batched index search; k, filter, select, exact, table as in search."""
        return self.searcher.search_many(name, queries, **kwargs)

    def sql(self, query: str) -> pd.DataFrame:
        """Run one SELECT against the catalog, where every output is a view: FROM jammi.<name>.
        It reads the catalog and files under the artifact directory, and writes nothing."""
        if not self.catalog.exists():
            raise ArtifactError(
                f"catalog {self.catalog.path} does not exist yet; run `jammi materialize` first"
            )
        one_reading_statement(query, "jammi sql")
        with reading_catalog(self.catalog) as con:
            try:
                return con.execute(query).df()
            except duckdb.Error as err:
                raise JammiError(f"SQL failed: {str(err).splitlines()[0]}") from None

    def status(self) -> pd.DataFrame:
        import pandas as pd

        cols = ["table_name", "pipeline", "source", "model_id", "status", "active", "dimensions",
                "rows_embedded", "rows_skipped", "rows_failed", "rows_truncated", "created_at"]
        active = self.catalog.active_names()
        rows = [{c: (t.table_name in active) if c == "active" else getattr(t, c) for c in cols}
                for t in self.catalog.tables()]
        return pd.DataFrame(rows, columns=cols)

    def tables(self, pipeline: str | None = None) -> pd.DataFrame:
        """Embedding tables (of `pipeline`), newest first: status, active flag, generation
        (source schema version, text columns, model), rows and creation time."""
        from jammi.tables.bluegreen import list_tables

        return list_tables(self.catalog, pipeline)

    def rollback(self, pipeline: str, to: str | None = None):
        """Switch `pipeline`'s active table back to the previous ready one (or to `to`),
        atomically; returns the new pointer (pipeline, table_name, previous_table, switched_at)."""
        from jammi.tables.bluegreen import rollback

        return rollback(self.catalog, pipeline, to)

    def versions(self, pipeline: str) -> pd.DataFrame:
        """Versions of `pipeline`'s active table, oldest first, with each refresh's counts."""
        from jammi.tables.bluegreen import list_versions

        return list_versions(self.catalog, pipeline)

    def rollback_version(self, pipeline: str, version: int):
        """Serve an earlier committed version of `pipeline`'s active table again, atomically."""
        from jammi.tables.bluegreen import rollback_version

        with self.catalog.pipeline_lock(pipeline):
            return rollback_version(self.catalog, pipeline, version)

    def compact(self, pipeline: str):
        """Rewrite the active table's current rows into one Parquet file with a fresh index."""
        from jammi.tables.bluegreen import active_table
        from jammi.tables.refresh import compact_table

        with self.catalog.pipeline_lock(pipeline):
            return compact_table(self.catalog, active_table(self.catalog, pipeline), pipeline)

    def expire(self, pipeline: str, keep: int):
        """Forget all but the newest `keep` versions of the active table; returns deleted files."""
        from jammi.tables.bluegreen import active_table
        from jammi.tables.refresh import expire_versions

        with self.catalog.pipeline_lock(pipeline):
            return expire_versions(self.catalog, active_table(self.catalog, pipeline), keep)

    def verify(self, pipelines: list[str] | None = None):
        """Source = table = index for each pipeline (see jammi.app.verify)."""
        from jammi.app.verify import verify

        return verify(self.project, pipelines)

    def remove_table(self, table_name: str):
        """Delete a non-active table's files and mark it `removed`; the active table is refused."""
        from jammi.tables.bluegreen import remove_table

        return remove_table(self.catalog, table_name)

    def recover_builds(self) -> list[RecoveryAction]:
        """What opening with recovery does (jammi.tables.recovery.recover), later: settle tables a
        dead process left in `building`; the actions are added to `recovered`."""
        actions = recover(self.catalog)
        self.recovered += actions
        return actions

    def recover(self) -> list[RecoveryAction]:
        """Settle interrupted builds, then publish jammi.duckdb afresh (a writer killed between
        its commit and its publish leaves the published file one write behind)."""
        actions = recover(self.catalog)
        if self.catalog.exists():
            self.catalog.publish()
        return actions

    def quarantine(self, source: str, limit: int | None = None) -> pd.DataFrame:
        """The rows of `quarantine_<source>` as extracted, with `_quarantine_reason`."""
        from jammi.app.quarantine import read_quarantine

        return read_quarantine(self.project, source, limit)

    def readmit(self, source: str, keys: list[str] | None = None, *, materialize):
        """Re-check quarantined rows (all, or `keys`) against the source as it is now and, when
        one passes, call `materialize([source])` (e.g. jammi_assets.runner's run_materialization
        bound to this project); see jammi.app.quarantine.readmit."""
        from jammi.app.quarantine import readmit

        return readmit(self.project, source, keys, materialize=materialize)

    def infer(
        self,
        source: str | None = None,
        texts: list[str | None] | None = None,
        *,
        columns: list[str] | None = None,
        model: str | None = None,
        limit: int | None = None,
        batch_size: int = 32,
    ) -> pa.Table:
        """Embed without persisting: given `texts`, or rows of `source` read and validated
        in memory (nothing is written)."""
        from jammi.embedding.infer import infer_texts  # here, not at import: `jammi search` needs it not

        if (source is None) == (texts is None):
            raise JammiError("infer needs either a source or texts")
        if texts is not None:
            first = next(iter(self.project.pipelines.values()), None)
            return infer_texts(self._infer_encoder(first, model), texts, source="inline",
                               batch_size=batch_size)
        if source not in self.project.sources:
            raise JammiError(f"unknown source {source!r} (declared: {', '.join(self.project.sources)})")
        spec = self.project.sources[source]
        pipes = self.project.pipelines_of(source)
        pipe = next(iter(pipes.values()), None)
        cols = columns or (pipe.text_columns if pipe else None)
        if not cols:
            raise JammiError(f"source {source!r}: say which columns to embed (--columns)")
        unknown = [c for c in cols if c not in spec.columns]
        if unknown:
            raise JammiError(f"source {source!r}: unknown column(s) {unknown}")
        from jammi.embedding.texts import compose_texts
        from jammi.ingest.extract import extract  # here, not at import: `jammi search` needs no Pandera
        from jammi.silver.recipe import to_silver

        frame = to_silver(extract(self.project, source), spec, source).valid
        if limit is not None:
            frame = frame.head(limit)
        encoder = self._infer_encoder(pipe, model)
        return infer_texts(encoder, compose_texts(frame, cols), frame[spec.key].astype(str).tolist(),
                           source=source, batch_size=batch_size)

    def _infer_encoder(self, pipe, model: str | None):
        """The pipeline's model on the pipeline's backend (its vectors are the table's), unless
        another model is asked for (that one runs on torch); the default model without a pipeline."""
        from jammi.embedding.model import load_encoder  # here, not at import: `jammi search` needs it not
        from jammi.spec.project import DEFAULT_MODEL

        if pipe is not None and model in (None, pipe.model):
            return load_encoder(pipe.model, backend=pipe.backend, artifact_dir=self.project.artifact_dir)
        return load_encoder(model or DEFAULT_MODEL)
