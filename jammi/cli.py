"""The `jammi` command line: materialize, search, sql, status, recover, infer, quarantine,
fusion, tables, stream.

The project file is --project PATH (before or after the command), else $JAMMI_PROJECT, else
./jammi.yaml. Errors print one readable line and exit non-zero. Commands that run the asset
graph call the `materialize` function the caller plugs in (`jammi_assets.cli` plugs in the
Dagster runner), so this module knows nothing of Dagster.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

import click

from jammi.errors import JammiError, SearchError
from jammi.query import MAX_K
from jammi.redact import redact
from jammi.spec.project import Project, load_project
from jammi.terminal import render

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

FORMATS = click.Choice(["table", "json", "csv"])


class Outcome(Protocol):
    """What the `materialize` plug-in returns (jammi_assets.runner.Outcome)."""

    success: bool
    run_id: str
    summary: list[dict]
    error: str | None
    run_ids: list[str]
    backfill_ids: list[str]


Materialize = Callable[..., Outcome]  # (project, select, device=, echo=, full=, partition=, workers=)
# the stream worker's plug-ins (jammi_assets.cli): "stream_reporter" (project, pipeline) -> a callback
# reporting each committed batch; "own_signals" () -> None, before the worker takes SIGTERM itself;
# "exit_fast": True where the process ends with the command (the console script), see _exit_fast


def _fail(message: str) -> None:
    message = redact(message)
    click.echo(f"error: {message.splitlines()[0] if message else 'failed'}", err=True)
    for extra in message.splitlines()[1:]:
        click.echo(f"       {extra}", err=True)
    sys.exit(1)


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except JammiError as err:
            _fail(str(err))


def _remember_project(ctx: click.Context, _param, value: str | None) -> str | None:
    if value is not None:
        ctx.ensure_object(dict)["project"] = value
    return value


def project_option(f):
    """--project on a subcommand too: `jammi materialize --project X` = `jammi --project X materialize`."""
    return click.option("--project", type=click.Path(dir_okay=False), default=None, expose_value=False,
                        is_eager=True, callback=_remember_project,
                        help="Project file (default: $JAMMI_PROJECT, else ./jammi.yaml).")(f)


def _project(ctx: click.Context) -> Project:
    return load_project(ctx.find_root().obj.get("project"))


def _materializer(ctx: click.Context) -> Materialize:
    materialize = ctx.find_root().obj.get("materialize")
    if materialize is None:
        raise JammiError("this command runs the asset graph and needs the Dagster layer: "
                         "run it through the `jammi` command (jammi_assets.cli)")
    return materialize


def _emit(frame: pd.DataFrame | pa.Table, fmt: str) -> None:
    click.echo(render(frame, fmt))


def _exit_fast(ctx: click.Context) -> None:
    """End the process now that a read-only command has written its output: the interpreter's
    teardown of onnxruntime, DuckDB, pyarrow and pydantic objects and modules takes about 0.1 s,
    as long as the rest of a `jammi search` after its imports. Only where the caller says the
    process ends with the command (the console script; never an in-process caller such as a test)."""
    if not ctx.find_root().obj.get("exit_fast"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    """--version, reading the installed version only when asked (importlib.metadata is slow to load)."""
    if not value or ctx.resilient_parsing:
        return
    from jammi import __version__

    click.echo(f"jammi, version {__version__}")
    ctx.exit()


@click.group(cls=_Group)
@project_option
@click.option("-v", "--verbose", is_flag=True, help="Show library warnings and debug logs.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and exit.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Jammi: validated, embedded, indexed, SQL-queryable tables from declared sources."""
    ctx.ensure_object(dict)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not verbose:
        import warnings

        warnings.filterwarnings("ignore")
        logging.getLogger("transformers").setLevel(logging.ERROR)
        logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@cli.command()
@project_option
@click.option("--select", "select", multiple=True,
              help="Asset, source or pipeline name (repeatable); default: everything.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--full", is_flag=True, help="Rebuild embedding tables instead of refreshing them (a "
              "sink compares every store row with the table).")
@click.option("--partition", default=None, metavar="KEY|FIRST...LAST",
              help="One partition of the selected partitioned sources, or an inclusive range (a "
                   "backfill); default: all of them.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Partitions of a backfill run at once, each in its own process.")
@click.pass_context
def materialize(ctx: click.Context, select: tuple[str, ...], device: str, full: bool,
                partition: str | None, workers: int) -> None:
    """Run the asset graph on the local Dagster instance, with progress.

    An embedding table of the same generation is refreshed: only added and changed rows are
    embedded, deleted rows leave it, and the result is committed as a new version. The runs
    appear in the Dagster UI under their job (`<source>_job`, `jammi_all`) and can be
    re-executed there; a range of partitions is a backfill on the UI's backfills page."""
    project = _project(ctx)
    t0 = time.perf_counter()
    outcome = _materializer(ctx)(project, list(select), device=device, echo=click.echo, full=full,
                                 partition=partition, workers=workers)
    names = [row["asset"] + (f" [{row['partition']}]" if row.get("partition") else "")
             for row in outcome.summary]
    width = max([28, *map(len, names)])
    click.echo(f"\n{'asset':<{width}} {'rows':>8}  details")
    for name, row in zip(names, outcome.summary, strict=True):
        click.echo(f"{name:<{width}} {row['rows']:>8}  {row['details']}")
    if not outcome.success:
        _fail(outcome.error or "materialization failed")
    runs = outcome.run_ids or [outcome.run_id]
    what = f"run {runs[0]}" if len(runs) == 1 else f"{len(runs)} runs" + (
        f", backfill {', '.join(outcome.backfill_ids)}" if outcome.backfill_ids else "")
    click.echo(f"\nmaterialized {len(outcome.summary)} asset(s) in {time.perf_counter() - t0:.1f}s "
               f"({what})")


@cli.command()
@project_option
@click.argument("name")
@click.argument("query", required=False)
@click.option("-k", "k", type=click.IntRange(1, MAX_K), default=10, show_default=True,
              help=f"Number of results (1 to {MAX_K}; fewer when the table has fewer rows).")
@click.option("--row-key", default=None, help="Search with the vector of this row instead of text.")
@click.option("--filter", "where", default=None, help="SQL predicate over the source's columns.")
@click.option("--select", "select", default=None, help="Comma-separated source columns to return.")
@click.option("--exact", is_flag=True, help="Exact scoring instead of the HNSW index.")
@click.option("--table", default=None, help="A specific ready embedding table (default: the active one).")
@click.option("--documents", is_flag=True,
              help="Chunked pipelines: k documents ranked by their best chunk, with its text and offsets.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def search(ctx, name, query, k, row_key, where, select, exact, table, documents, fmt) -> None:
    """Semantic search over source or pipeline NAME with QUERY text (or --row-key)."""
    from jammi.app.facade import Jammi

    cols = [c.strip() for c in select.split(",")] if select else None
    # Recovery only when the search fails: it changes what is served only where nothing ready
    # was (it activates a promoted table only for a pipeline serving none), so a search that
    # succeeds without it finds what it would have found after it, a catalog opening sooner.
    jammi = Jammi(_project(ctx), recover_on_open=False)

    def run():
        if documents:  # ranked from pandas frames
            return jammi.search(name, query, row_key=row_key, k=k, filter=where, select=cols, exact=exact,
                                table=table, documents=True)
        return jammi.search_table(name, query, row_key=row_key, k=k, filter=where, select=cols,
                                  exact=exact, table=table)  # printed from Arrow: no pandas import

    try:
        frame = run()
    except SearchError:
        if not jammi.recover_builds():
            raise
        frame = run()
    _emit(frame, fmt)
    _exit_fast(ctx)  # nothing is left to write: the search only read (any recovery has committed)


@cli.command()
@project_option
@click.argument("query")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def sql(ctx, query, fmt) -> None:
    """Run SQL over the catalog; every output is a view: SELECT ... FROM jammi.<name>."""
    from jammi.app.facade import Jammi

    _emit(Jammi(_project(ctx)).sql(query), fmt)


@cli.command()
@project_option
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--streams", "streams_only", is_flag=True,
              help="Only the stream workers' figures (with --format json/csv: one document of them).")
@click.pass_context
def status(ctx, fmt, streams_only) -> None:
    """Embedding tables with their status, active flag and counts (newest first), then each stream
    worker's last figures: events/s, latency p50/p95/p99, error rate, dead-lettered, lag. With
    --format json or csv one document is printed: the tables, or with --streams the streams."""
    import pandas as pd

    from jammi.app.facade import Jammi
    from jammi.app.stream.metrics import read_statuses

    project = _project(ctx)
    if not streams_only:
        jammi = Jammi(project)
        _emit(jammi.status(), fmt)
        if fmt != "table":
            return
        if jammi.catalog.pg is not None:  # where the state lives: host, port, database; no credentials
            click.echo(f"\ncatalog: {jammi.catalog.backend}")
    streams = read_statuses(project.artifact_dir)
    if streams or streams_only:
        cols = ["pipeline", "state", "events_per_s", "p50_s", "p95_s", "p99_s", "error_rate", "dead_lettered",
                "lag", "events", "version", "updated_at"]
        frame = pd.DataFrame(streams).reindex(columns=cols)
        updated = pd.to_datetime(frame["updated_at"], unit="s", utc=True)
        frame["updated_at"] = updated.dt.strftime("%Y-%m-%d %H:%M:%S")
        if fmt == "table" and not streams_only:
            click.echo("\nstreams (the workers' last figures)")
        _emit(frame, fmt)


@cli.command()
@project_option
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def recover(ctx, fmt) -> None:
    """Rebuild a damaged or lost catalog state from the published catalog, settle tables left in
    `building` by a process that died, and publish jammi.duckdb afresh."""
    import pandas as pd

    from jammi.app.facade import Jammi

    actions = Jammi(_project(ctx), recover_on_open=False).recover()
    _emit(pd.DataFrame([a.__dict__ for a in actions], columns=["table_name", "action", "detail"]), fmt)


@cli.command()
@project_option
@click.argument("texts", nargs=-1)
@click.option("--source", default=None, help="Embed rows of this source instead of TEXTS.")
@click.option("--columns", default=None, help="Comma-separated text columns (default: pipeline's).")
@click.option("--model", default=None, help="Model id or local directory.")
@click.option("--limit", type=int, default=None, help="At most this many source rows.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def infer(ctx, texts, source, columns, model, limit, fmt) -> None:
    """Embed TEXTS or a source's rows without writing anything."""
    from jammi.app.facade import Jammi

    if not texts and not source:
        raise JammiError("give TEXTS to embed or --source NAME")
    if texts and source:
        raise JammiError("give either TEXTS or --source, not both")
    jammi = Jammi(_project(ctx), recover_on_open=False)
    cols = [c.strip() for c in columns.split(",")] if columns else None
    table = jammi.infer(source=source, texts=list(texts) if texts else None, columns=cols,
                        model=model, limit=limit)
    _emit(table.to_pandas(), fmt)


@cli.group(cls=_Group)
def fusion() -> None:
    """Entity fusion: answer the pairs the matcher is least sure of, load or list labels."""


def _pair_screen(pair, n: int, total: int) -> str:
    from jammi.terminal import render_pair

    ls, lid, rs, rid = pair.key
    state = "linked" if pair.linked else "not linked"
    title = (f"pair {n} of {total}: {ls}~{rs}  score {pair.score:.3f} (threshold {pair.threshold:.2f}, "
             f"{state})")
    fields = list(dict.fromkeys([*pair.left, *pair.right]))
    rows = [(f, pair.left.get(f), pair.right.get(f),
             f"{pair.similarities[f]:.2f}" if f in pair.similarities
             and pair.similarities[f] == pair.similarities[f] else "") for f in fields]
    for name, sim in pair.similarities.items():  # the record's embedding, and each free-text field's own
        if name.startswith("cos") and sim == sim:
            label = "(embedding)" if name == "cos" else f"({name.removeprefix('cos_')} embedding)"
            rows.append((label, "", "", f"cos {sim:.2f}"))
    return render_pair(title, f"{ls} {lid}", f"{rs} {rid}", rows)


@fusion.command("review")
@project_option
@click.argument("entity")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Ask about at most this many pairs.")
@click.option("--by", "by", default=None, help="Who is answering (default: $JAMMI_USER, else the login).")
@click.pass_context
def fusion_review(ctx, entity, limit, by) -> None:
    """Answer, for the pairs of ENTITY the matcher is least sure of (and, every fourth, one
    from a band of the scores), whether they are the same: y(es), n(o), s(kip) or q(uit). Each
    answer is stored at once in jammi.fusion_labels; the next materialization of fused_ENTITY
    links every yes, never a no, and, once the answers are enough, refits its match model to
    them."""
    from jammi.app.fusion_review import record_answer, review_pairs

    project = _project(ctx)
    pairs = review_pairs(project, entity, limit)
    if not pairs:
        click.echo(f"nothing to review for {entity!r}: every contender pair is answered")
        return
    answered = {"y": 0, "n": 0, "s": 0}
    for n, pair in enumerate(pairs, start=1):
        click.echo(_pair_screen(pair, n, len(pairs)))
        choice = click.prompt("same thing? [y]es [n]o [s]kip [q]uit", type=click.Choice(["y", "n", "s", "q"]),
                              show_choices=False)
        click.echo("")
        if choice == "q":
            break
        answered[choice] += 1
        if choice != "s":
            record_answer(project, entity, pair.key, choice == "y", by)
    stored = answered["y"] + answered["n"]
    click.echo(f"{stored} answer(s) stored ({answered['y']} yes, {answered['n']} no, "
               f"{answered['s']} skipped); materialize fused_{entity} to use them: "
               f"jammi materialize --select fused_{entity}")


@fusion.command("labels")
@project_option
@click.argument("entity")
@click.option("--load", "load", type=click.Path(dir_okay=False), default=None,
              help="Store the labelled pairs of this CSV file first (columns left_source, left_id, "
              "right_source, right_id and label, or two columns named after sources).")
@click.option("--by", "by", default=None, help="Who the loaded labels come from (default: you).")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def fusion_labels(ctx, entity, load, by, fmt) -> None:
    """The answers stored about ENTITY's record pairs: who said what, and when."""
    from jammi.app.fusion_review import list_labels, load_labels

    project = _project(ctx)
    if load:
        count = load_labels(project, entity, load, by)
        click.echo(f"{count} labelled pair(s) stored from {load}", err=True)
    _emit(list_labels(project, entity), fmt)


@cli.group(cls=_Group)
def quarantine() -> None:
    """Rows that failed validation: list them, re-admit them once fixed upstream."""


@quarantine.command("list")
@project_option
@click.argument("source")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many rows.")
@click.pass_context
def quarantine_list(ctx, source, fmt, limit) -> None:
    """Quarantined rows of SOURCE, as extracted, with the reasons they failed."""
    from jammi.app.quarantine import read_quarantine

    _emit(read_quarantine(_project(ctx), source, limit), fmt)


@quarantine.command("readmit")
@project_option
@click.argument("source")
@click.option("--key", "keys", multiple=True, help="Only this quarantined key (repeatable).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.pass_context
def quarantine_readmit(ctx, source, keys, device) -> None:
    """Re-validate SOURCE's quarantined rows and re-materialize it if any now pass."""
    from jammi.app.quarantine import readmit

    project = _project(ctx)
    materialize = _materializer(ctx)
    result = readmit(project, source, list(keys) or None,
                     materialize=lambda select: materialize(project, select, device=device, echo=click.echo))
    if result.statuses.empty:
        click.echo(f"no quarantined rows in quarantine_{source}")
        return
    _emit(result.statuses, "table")
    if result.outcome is None:
        click.echo("\nno quarantined row passes validation yet; nothing was re-materialized")
        return
    outcome = cast(Outcome, result.outcome)  # what `materialize` returned
    if not outcome.success:
        _fail(outcome.error or "materialization failed")
    click.echo(f"\nre-admitted {len(result.readmitted)} row(s); materialized "
               f"{len(outcome.summary)} asset(s) (run {outcome.run_id})")


@cli.group(cls=_Group)
def catalog() -> None:
    """The catalog as a file for other DuckDB clients."""


@catalog.command("export")
@project_option
@click.argument("target")
@click.pass_context
def catalog_export(ctx, target) -> None:
    """Write the catalog to TARGET (a path, or an s3:// gs:// az:// URL) as one DuckDB file: a
    view per output and embedding table over the files where they live (object-store URLs
    need DuckDB's httpfs and the client's own credentials; the file holds none)."""
    from jammi.app.facade import Jammi

    written = Jammi(_project(ctx), recover_on_open=False).export_catalog(target)
    click.echo(f"wrote {written}")


@cli.group(cls=_Group)
def tables() -> None:
    """Blue/green embedding tables: list them, roll a pipeline back, remove old ones."""


@tables.command("list")
@project_option
@click.argument("pipeline", required=False)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def tables_list(ctx, pipeline, fmt) -> None:
    """Tables of PIPELINE (default: all), newest first, with the active flag and generation."""
    from jammi.app.facade import Jammi

    _emit(Jammi(_project(ctx), recover_on_open=False).tables(pipeline), fmt)


@tables.command("rollback")
@project_option
@click.argument("pipeline")
@click.option("--to", "to", default=None, help="This ready table (default: the one active before).")
@click.option("--version", "version", type=int, default=None,
              help="Serve this earlier version of the active table instead.")
@click.pass_context
def tables_rollback(ctx, pipeline, to, version) -> None:
    """Switch PIPELINE's active table back to the previous ready table, or its active table back
    to an earlier version (--version N), atomically."""
    from jammi.app.facade import Jammi

    jammi = Jammi(_project(ctx), recover_on_open=False)
    if version is not None:
        if to is not None:
            raise JammiError("give either --to TABLE or --version N, not both")
        chosen = jammi.rollback_version(pipeline, version)
        click.echo(f"{pipeline}: {chosen.table_name} now serves version {chosen.version} "
                   f"({chosen.rows} rows)")
        return
    pointer = jammi.rollback(pipeline, to)
    click.echo(f"{pipeline}: active table is now {pointer.table_name}"
               + (f" (was {pointer.previous_table})" if pointer.previous_table else ""))


@tables.command("versions")
@project_option
@click.argument("pipeline")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def tables_versions(ctx, pipeline, fmt) -> None:
    """Versions of PIPELINE's active table, with what each refresh added, changed and deleted."""
    from jammi.app.facade import Jammi

    _emit(Jammi(_project(ctx), recover_on_open=False).versions(pipeline), fmt)


@tables.command("compact")
@project_option
@click.argument("pipeline")
@click.pass_context
def tables_compact(ctx, pipeline) -> None:
    """Rewrite PIPELINE's current rows into one Parquet file with a fresh index (a new version)."""
    from jammi.app.facade import Jammi

    version = Jammi(_project(ctx), recover_on_open=False).compact(pipeline)
    click.echo(f"{pipeline}: compacted into version {version.version} ({version.rows} rows, one segment)")


@tables.command("expire")
@project_option
@click.argument("pipeline")
@click.option("--keep", type=click.IntRange(min=1), default=5, show_default=True,
              help="Versions to keep (the current one is always kept).")
@click.pass_context
def tables_expire(ctx, pipeline, keep) -> None:
    """Delete the files of PIPELINE's old versions, keeping the newest --keep."""
    from jammi.app.facade import Jammi

    deleted = Jammi(_project(ctx), recover_on_open=False).expire(pipeline, keep)
    click.echo(f"{pipeline}: kept the newest {keep} version(s); {len(deleted)} file(s) deleted")


@tables.command("remove")
@project_option
@click.argument("table")
@click.pass_context
def tables_remove(ctx, table) -> None:
    """Delete TABLE's files and mark it removed; the active table of a pipeline is refused."""
    from jammi.app.facade import Jammi

    removed = Jammi(_project(ctx), recover_on_open=False).remove_table(table)
    click.echo(f"removed {removed.table_name} ({len(removed.deleted)} file(s) deleted)")


@cli.command()
@project_option
@click.argument("pipelines", nargs=-1)
@click.option("--repair", is_flag=True, help="Refresh (or rebuild) what does not match, then check again.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def verify(ctx, pipelines, repair, device, fmt) -> None:
    """Check that source = table = index for PIPELINES (default: all), and that each of their
    sinks serves exactly the table's rows; exit 1 on any difference.

    missing: validated rows with text the table lacks; stale: rows embedded from other text;
    orphan: table rows no longer in the source; unindexed: rows no HNSW sidecar covers. A sink's
    row (its store table under table_name) counts store rows the same way against the table."""
    from jammi.app.facade import Jammi
    from jammi.app.verify import as_frame, verify

    project = _project(ctx)
    found = verify(project, list(pipelines) or None)
    if repair and not all(v.clean for v in found):
        materialize = _materializer(ctx)
        for v in (v for v in found if not v.clean):
            what = f"{v.pipeline} sink {v.sink}" if v.sink else v.pipeline
            if v.intact is not None:  # a damaged file: serve the newest intact version, refresh forward
                Jammi(project, recover_on_open=False).rollback_version(v.pipeline, v.intact)
                click.echo(f"repairing {what}: {v.table_name} rolled back to version {v.intact} (its newest "
                           "intact version), refreshing forward from the validated rows")
            elif v.damaged and not v.sink:
                click.echo(f"repairing {what} (full rebuild: {v.damaged} is damaged and no earlier version "
                           f"of {v.table_name} is intact without it)")
            else:
                click.echo(f"repairing {what}" + (" (full rebuild)" if v.needs_rebuild else ""))
            outcome = materialize(project, v.repair_assets, device=device, echo=click.echo,
                                  full=v.repair_full)
            if not outcome.success:
                _fail(outcome.error or f"repairing {what} failed")
        found = verify(project, list(pipelines) or None)
    _emit(as_frame(found), fmt)
    if not all(v.clean for v in found):
        sys.exit(1)


@cli.command()
@project_option
@click.argument("pipeline")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--status-every", type=click.FloatRange(min=0.1), default=None,
              help="Seconds between status lines (default: the source's nats.status_every_s, 10).")
@click.option("--max-batches", type=click.IntRange(min=1), default=None, help="Stop after this many batches.")
@click.option("--idle-exit", type=click.FloatRange(min=0.1), default=None,
              help="Stop once no event has arrived for this many seconds.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads of the model: one is fastest for small batches on a shared CPU.")
@click.pass_context
def stream(ctx, pipeline, device, status_every, max_batches, idle_exit, threads) -> None:
    """Run the stream worker of PIPELINE (or of a stream source): pull micro-batches from NATS
    JetStream, validate, embed, commit each as a new version of the table, then acknowledge.

    Prints a status line every few seconds (events/s, latency p50/p95/p99 from publish to
    searchable, error rate, dead-lettered, consumer lag); `jammi status` shows the same.
    SIGTERM or Ctrl-C finishes the batch in hand and exits 0."""
    import signal
    import threading

    from jammi.app.stream.worker import run_worker, stream_pipeline_of
    from jammi.embedding.providers import pipeline_encoder
    from jammi.embedding.threads import set_cpu_threads

    project = _project(ctx)
    pipeline = stream_pipeline_of(project, pipeline)
    plugins = ctx.find_root().obj
    reporter = plugins.get("stream_reporter")
    stop = threading.Event()
    if plugins.get("own_signals"):
        plugins["own_signals"]()

    def on_signal(signum, _frame) -> None:
        if not stop.is_set():
            click.echo(f"stream {pipeline}: {signal.Signals(signum).name}: finishing the batch in hand",
                       err=True)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    set_cpu_threads(threads)
    pipe = project.pipelines[pipeline]
    encoder = pipeline_encoder(pipe, device, project.artifact_dir, project.secrets)
    metrics = run_worker(project, pipeline, encoder, echo=click.echo, stop=stop,
                         on_commit=reporter(project, pipeline) if reporter else None,
                         status_every_s=status_every, max_batches=max_batches, idle_exit_s=idle_exit)
    click.echo(f"stream {pipeline}: stopped after {metrics.events} event(s) in {metrics.batches} batch(es)")


def main(materialize: Materialize | None = None, **plugins: object) -> None:
    """Run the `jammi` command line on sys.argv and exit. `materialize` runs the asset graph for
    the commands that need it (jammi_assets.cli plugs in the Dagster runner; without it they
    fail with a readable error); `plugins` are the stream worker's (see the module's top)."""
    cli(prog_name="jammi", obj={"materialize": materialize, "exit_fast": True, **plugins})


if __name__ == "__main__":
    main()

