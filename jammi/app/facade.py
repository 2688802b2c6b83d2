"""The Python facade, `jammi.Jammi`: one object over a project's artifact directory for
search, SQL, status, recovery, blue/green table management and raw inference, the same
operations the `jammi` CLI offers (each CLI command opens a Jammi and calls one method).

    from jammi import Jammi

    jammi = Jammi("jammi.yaml")
    jammi.search("products", "waterproof jacket", k=5, select=["title", "price"])
    jammi.sql("SELECT count(*) FROM jammi.validated_products")

Running the asset graph (materializing) is Dagster's work: `jammi materialize`, the Dagster
UI, or jammi_assets.runner.run_materialization. The facade reads what those runs wrote."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from jammi.errors import ArtifactError, JammiError
from jammi.query.sandbox import check_named_tables, one_reading_statement, reading_catalog
from jammi.query.searcher import Searcher
from jammi.query.serving import EncoderLoader
from jammi.spec.project import Project, load_project
from jammi.store import Location
from jammi.tables.catalog import Catalog, damaged
from jammi.tables.recovery import RecoveryAction, recover

if TYPE_CHECKING:

    import numpy as np
    import pandas as pd

    from jammi.app.quarantine import Readmission
    from jammi.app.verify import Verification
    from jammi.tables.bluegreen import RemovedTable
    from jammi.tables.catalog import Pointer
    from jammi.tables.versions import Version

__all__ = ["Jammi"]


class Jammi:
    """A project's embedding tables, catalog and quarantine, opened from its jammi.yaml.

    Attributes: `project` (the loaded jammi.yaml), `catalog` (the embedding tables' catalog
    under the artifact directory), `recovered` (what recovery settled so far) and `searcher`
    (the jammi.query.searcher.Searcher that keeps what searches read)."""

    def __init__(self, project: str | os.PathLike[str] | Project | None = None, *,
                 recover_on_open: bool = True, loader: EncoderLoader | None = None) -> None:
        """Open `project`: a loaded Project, or the path of its jammi.yaml (default:
        $JAMMI_PROJECT, else ./jammi.yaml).

        With `recover_on_open`, tables a dead process left `building` are settled first
        (jammi.tables.recovery). `loader(model_id)` gives the query encoder, called once per
        model (default: the table's own backend, torch-free from its cached export;
        jammi.query.encoders)."""
        self.project = project if isinstance(project, Project) else load_project(project)
        self.catalog = Catalog(self.project.artifact_dir)
        self.recovered: list[RecoveryAction] = recover(self.catalog) if recover_on_open else []
        self.searcher = Searcher(self.project, self.catalog, loader)

    def search(self, name: str, query: str | None = None, *,
               vector: Sequence[float] | np.ndarray | None = None, row_key: str | int | None = None,
               k: int = 10, filter: str | None = None, select: list[str] | None = None,
               exact: bool = False, table: str | None = None, documents: bool = False) -> pd.DataFrame:
        """The `k` rows of `name` (a source, entity or pipeline) nearest to one of: the `query`
        text, a `vector`, or the vector of the row whose key is `row_key` (that row left out).

        `filter` is an SQL predicate over the source's columns; `select` the source columns to
        return (default: all of them), followed by `_row_id` and `similarity` (cosine), best
        first. `exact` scores every row instead of using the HNSW index; `table` searches a
        specific ready table instead of the active one. With `documents` (chunked pipelines),
        the `k` documents ranked by their best chunk, with its text and offsets.

        What a search reads is kept for the next one until a new version is served
        (jammi.query.searcher). Raises SearchError for an unknown name, a bad `k` or column."""
        return self.searcher.search(name, query, vector=vector, row_key=row_key, k=k, filter=filter,
                                    select=select, exact=exact, table=table, documents=documents)

    def search_table(self, name: str, query: str | None = None, *,
                     vector: Sequence[float] | np.ndarray | None = None,
                     row_key: str | int | None = None, k: int = 10, filter: str | None = None,
                     select: list[str] | None = None, exact: bool = False,
                     table: str | None = None) -> pa.Table:
        """`search`'s rows (not documents) as an Arrow table, without pandas: the source's
        columns as stored, then `_row_id` and `similarity`. What `jammi search` prints."""
        return self.searcher.search_table(name, query, vector=vector, row_key=row_key, k=k,
                                          filter=filter, select=select, exact=exact, table=table)

    def search_many(self, name: str, queries: Sequence[str] | np.ndarray, *, k: int = 10,
                    filter: str | None = None, select: list[str] | None = None, exact: bool = False,
                    table: str | None = None) -> list[pd.DataFrame]:
        """`search` for each of `queries` (texts, or vectors as the rows of a 2-D array), in
        order: the texts encoded in one call, the index searched once for all of them."""
        return self.searcher.search_many(name, queries, k=k, filter=filter, select=select,
                                         exact=exact, table=table)

    def sql(self, query: str) -> pd.DataFrame:
        """Run one SELECT against the catalog, where every output is a view: FROM jammi.<name>.
        It reads the catalog and files under the artifact directory, and writes nothing.
        Raises ArtifactError before the first materialization, JammiError when the SQL fails."""
        if not self.catalog.exists():
            raise ArtifactError(
                f"catalog {self.catalog.path} does not exist yet; run `jammi materialize` first"
            )
        one_reading_statement(query, "jammi sql")
        check_named_tables(self.catalog, query)
        with reading_catalog(self.catalog) as con:
            try:
                return con.execute(query).df()
            except duckdb.Error as err:
                hint = ("; a table file may be damaged: `jammi verify` names it and `jammi verify --repair` "
                        "repairs it") if damaged(err) else ""
                if isinstance(err, duckdb.CatalogException) and "does not exist" in str(err):
                    hint = ("; every output of a materialized asset is a view jammi.<name>: `jammi sql "
                            "\"SHOW TABLES\"` lists them, `jammi materialize` makes the missing ones")
                raise JammiError(f"SQL failed: {str(err).splitlines()[0]}{hint}") from None

    def export_catalog(self, target: Location) -> Location:
        """Write the catalog as one DuckDB file of views for any client to `target` (a path or
        an object-store URL); see jammi.tables.export."""
        from jammi.tables.export import export_catalog

        return export_catalog(self.catalog, target)

    def status(self) -> pd.DataFrame:
        """Every embedding table in the catalog, one row each: name, pipeline, source, model,
        status (building, ready, failed, removed), whether search serves it, dimensions, row
        counts (embedded, skipped, failed, truncated) and creation time."""
        import pandas as pd

        cols = ["table_name", "pipeline", "source", "model_id", "status", "active", "dimensions",
                "rows_embedded", "rows_skipped", "rows_failed", "rows_truncated", "created_at"]
        active = self.catalog.active_names()
        rows = [{c: (t.table_name in active) if c == "active" else getattr(t, c) for c in cols}
                for t in self.catalog.tables()]
        usage = self.catalog.usage_by_table()  # a provider's tables: what their runs sent and avoided
        if usage:
            cost = ["requests", "tokens_sent", "estimated_cost", "tokens_avoided", "cost_avoided"]
            cols += cost
            for row in rows:
                row.update({c: usage.get(row["table_name"], {}).get(c) for c in cost})
        return pd.DataFrame(rows, columns=cols)

    def tables(self, pipeline: str | None = None) -> pd.DataFrame:
        """Embedding tables (of `pipeline`), newest first: status, active flag, generation
        (source schema version, text columns, model), rows and creation time."""
        from jammi.tables.bluegreen import list_tables

        return list_tables(self.catalog, pipeline)

    def rollback(self, pipeline: str, to: str | None = None) -> Pointer:
        """Switch `pipeline`'s active table back to the previous ready one (or to the table
        named `to`), atomically; returns the new pointer (pipeline, table_name, previous_table,
        switched_at)."""
        from jammi.tables.bluegreen import rollback

        return rollback(self.catalog, pipeline, to)

    def versions(self, pipeline: str) -> pd.DataFrame:
        """Versions of `pipeline`'s active table, oldest first, with each refresh's counts."""
        from jammi.tables.bluegreen import list_versions

        return list_versions(self.catalog, pipeline)

    def rollback_version(self, pipeline: str, version: int) -> Version:
        """Serve an earlier committed `version` of `pipeline`'s active table again, atomically;
        returns that version."""
        from jammi.tables.bluegreen import rollback_version

        with self.catalog.pipeline_lock(pipeline):
            return rollback_version(self.catalog, pipeline, version)

    def compact(self, pipeline: str) -> Version:
        """Rewrite the small segments of `pipeline`'s active table, and every segment with
        deleted rows, into full segments with fresh indexes; returns the new version."""
        from jammi.tables.bluegreen import active_table
        from jammi.tables.refresh import compact_table

        with self.catalog.pipeline_lock(pipeline):
            return compact_table(self.catalog, active_table(self.catalog, pipeline), pipeline)

    def expire(self, pipeline: str, keep: int) -> list[Location]:
        """Forget all but the newest `keep` versions of `pipeline`'s active table (the current
        one is always kept); returns the files deleted."""
        from jammi.tables.bluegreen import active_table
        from jammi.tables.refresh import expire_versions

        with self.catalog.pipeline_lock(pipeline):
            return expire_versions(self.catalog, active_table(self.catalog, pipeline), keep)

    def verify(self, pipelines: list[str] | None = None) -> list[Verification]:
        """Source = table = index, for each of `pipelines` (default: all): the validated frame's
        keys and texts against the active table's rows and hashes, and the table against its
        sidecar indexes (see jammi.app.verify)."""
        from jammi.app.verify import verify

        return verify(self.project, pipelines)

    def remove_table(self, table_name: str) -> RemovedTable:
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
        """Rebuild a damaged or lost state file from the published catalog, settle interrupted
        builds, then publish jammi.duckdb afresh (a writer killed between its commit and its
        publish leaves the published file one write behind; a damaged one is rewritten)."""
        actions = [RecoveryAction(*done) for done in self.catalog.repair_state()]
        actions += recover(self.catalog)
        if self.catalog.exists():
            self.catalog.publish()
        return actions

    def quarantine(self, source: str, limit: int | None = None) -> pd.DataFrame:
        """The rows of `quarantine_<source>` (the first `limit`) as extracted, with
        `_quarantine_reason`."""
        from jammi.app.quarantine import read_quarantine

        return read_quarantine(self.project, source, limit)

    def readmit(self, source: str, keys: list[str] | None = None, *,
                materialize: Callable[[list[str]], object]) -> Readmission:
        """Re-check quarantined rows of `source` (all, or those of `keys`) against the source as
        it is now and, when one passes, call `materialize([source])` (e.g. jammi_assets.runner's
        run_materialization bound to this project); see jammi.app.quarantine.readmit."""
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
        """Embed without persisting: given `texts`, or the rows of `source` (the first `limit`)
        read and validated in memory; nothing is written.

        A source's texts are its pipeline's text columns, or `columns`; the model is the one
        that made its pipeline's table, or `model` (on torch); without a pipeline, the default
        model. Returns one row per text with its vector; a null or empty text gets an error
        status and the rest go on."""
        from jammi.embedding.infer import infer_texts  # here, not at import: `jammi search` needs it not

        if texts is not None and source is None:
            first = next(iter(self.project.pipelines.values()), None)
            return infer_texts(self._infer_encoder(first, model), texts, source="inline",
                               batch_size=batch_size)
        if source is None or texts is not None:
            raise JammiError("infer needs either a source or texts")
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
        """The pipeline's provider, or its model on its backend (its vectors are the table's), unless
        another model is asked for (that one runs on torch); the default model without a pipeline."""
        from jammi.embedding.model import load_encoder  # here, not at import: `jammi search` needs it not
        from jammi.spec.project import DEFAULT_MODEL

        if pipe is not None and pipe.provider is not None and model in (None, pipe.model_id):
            from jammi.embedding.providers import load_provider

            return load_provider(pipe.provider, self.project.secrets)
        if pipe is not None and model in (None, pipe.model):
            return load_encoder(pipe.model, backend=pipe.backend, artifact_dir=self.project.artifact_dir)
        return load_encoder(model or DEFAULT_MODEL)
