"""The catalog with its state in PostgreSQL (`catalog: {postgres: DSN}`), against the local
server: the catalog API behaves as with the local state file (the same sequence of writes and
reads, run on both backends); a second node's published file follows the state; writers of one
pipeline in two processes are serialized; a SIGKILLed lock holder releases its lock; an
unreachable server is one clear line naming the host, never the password; a project built,
refreshed, rolled back and compacted through the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
import yaml

from jammi.errors import ArtifactError
from jammi.spec.catalog import PostgresCatalogSpec, configure_catalog
from jammi.spec.project import load_project
from jammi.tables.catalog import STATUS_READY, STATUS_REMOVED, Catalog, PipelineBusy
from jammi.tables.versions import Counts, FileRef, Version
from tests.conftest import PG_DSN, REPO, invoke_cli, pg_connect

PASSWORD = "hunter2-catalog-secret"  # trust auth ignores it; nothing may print it
DSN = PG_DSN.replace("postgresql://", f"postgresql://postgres:{PASSWORD}@")


def pg_spec(schema: str) -> PostgresCatalogSpec:
    return PostgresCatalogSpec.model_validate({"postgres": DSN, "schema": schema})


@pytest.fixture(params=["local", "postgres"])
def catalog(request, tmp_path) -> Catalog:
    if request.param == "local":
        return Catalog(tmp_path / "artifacts")
    return Catalog(tmp_path / "artifacts", postgres=pg_spec(request.getfixturevalue("schema")))


def begin(catalog: Catalog, name: str, pipeline: str = "p") -> None:
    catalog.begin_table({"table_name": name, "pipeline": pipeline, "source": "s", "model_id": "m",
                         "text_columns": ["title"], "key_column": "id", "generation": "g1",
                         "parquet_path": catalog.artifact_dir / "jammi_db" / f"{name}.parquet"})


def first_version(name: str, rows: int) -> Version:
    return Version(name, 0, (FileRef(f"{name}.parquet", rows),), rows=rows)


def test_catalog_api_behaves_the_same_on_both_backends(catalog):
    assert not catalog.exists() and catalog.active(pipeline="p") is None
    begin(catalog, "t1")
    assert catalog.exists() and catalog.table("t1").status == "building"
    assert catalog.activate("t1", first=first_version("t1", 3), rows_embedded=3)
    begin(catalog, "t2")
    assert catalog.activate("t2", first=first_version("t2", 4), rows_embedded=4)
    assert catalog.pointer("p").table_name == "t2" and catalog.pointer("p").previous_table == "t1"
    assert catalog.active_names() == {"t2"}
    assert catalog.switch_active("p", "t1").table_name == "t1"
    with pytest.raises(ArtifactError, match="active table of pipeline 'p'"):
        catalog.mark_removed("t1")
    assert catalog.mark_removed("t2").table_name == "t2"
    assert catalog.table("t2").status == STATUS_REMOVED

    base = catalog.current_version(catalog.table("t1"))
    v1 = Version("t1", 1, (FileRef("t1.parquet", 3), FileRef("t1.s1.parquet", 2)), rows=5,
                 counts=Counts(added=2, unchanged=3, rows_encoded=2, outcome="refreshed"))
    catalog.commit_version("p", v1, base)
    with pytest.raises(ArtifactError, match="moved to version 1"):  # a refresh that lost the race
        catalog.commit_version("p", Version("t1", 2, (), rows=0), base)
    assert catalog.next_version_number("t1") == 2
    snap = catalog.snapshot("p")
    assert (snap.active.table_name, snap.version.version, snap.version.rows) == ("t1", 1, 5)
    assert snap.active.rows_embedded == 5 and snap.pointer.table_name == "t1"
    assert catalog.serving(pipeline="p")[1].version == 1
    assert catalog.set_current_version("p", "t1", 0).rows == 3
    catalog.drop_versions("t1", [1])
    assert [v.version for v in catalog.versions("t1")] == [0]

    class Outcome:
        name, severity, passed, statistic, threshold, description, examples = (
            "row_count", "error", True, 3.0, None, "all rows", [])

    catalog.record_checks("run1", "p_embeddings", None, [Outcome(), Outcome()])
    catalog.log_refresh("p", "t1", 0, Counts(unchanged=3, outcome="no_change"))
    pair = {"entity": "e", "left_source": "a", "left_id": "1", "right_source": "b", "right_id": "2",
            "labelled_by": "me", "origin": None}
    catalog.add_fusion_labels([{**pair, "is_match": True, "labelled_at": datetime(2026, 1, 1)}])
    catalog.add_fusion_labels([{**pair, "is_match": False, "labelled_at": datetime(2026, 1, 2)}])
    assert [(r["is_match"], r["labelled_at"]) for r in catalog.fusion_labels("e")] == [
        (False, datetime(2026, 1, 2))]
    frame = catalog.artifact_dir / "frames" / "validated_s.parquet"
    frame.parent.mkdir(parents=True)
    duckdb.sql("COPY (SELECT 1 AS id) TO '" + str(frame) + "' (FORMAT parquet)")
    catalog.register_output("validated_s", frame, 1)

    with catalog.connect(read_only=True) as con:  # the published file, as every client reads it
        assert con.execute("SELECT count(*) FROM quality_report").fetchone()[0] == 2
        assert con.execute("SELECT outcome FROM refresh_log ORDER BY committed_at").fetchall() == [
            ("rebuilt",), ("rebuilt",), ("refreshed",), ("rolled_back",), ("no_change",)]
        assert con.execute("SELECT id FROM validated_s").fetchall() == [(1,)]
        assert con.execute("SELECT table_name, status, active FROM embedding_status ORDER BY 1").fetchall() \
            == [("t1", STATUS_READY, True), ("t2", STATUS_REMOVED, False)]


def test_a_second_node_follows_the_state_and_pays_one_query_per_read(tmp_path, schema):
    one = Catalog(tmp_path / "node1", postgres=pg_spec(schema))
    two = Catalog(tmp_path / "node2", postgres=pg_spec(schema))  # no shared disk with node1
    begin(one, "t1")
    one.activate("t1", first=first_version("t1", 3), rows_embedded=3)
    assert not two.path.exists() and two.exists()
    stamp = two.stamp()
    assert two.active(pipeline="p").table_name == "t1"  # published on first read
    before = two.round_trips
    snap = two.snapshot("p")
    assert two.round_trips - before == 1  # the state sequence, nothing else: the file was current
    assert (snap.active.table_name, snap.version.version) == ("t1", 0)
    one.commit_version("p", Version("t1", 1, (FileRef("t1.parquet", 3),), rows=3), snap.version)
    assert two.stamp() != stamp
    assert two.snapshot("p").version.version == 1  # republished: the file was behind
    with duckdb.connect(str(two.path), read_only=True) as con:  # any DuckDB client of node2
        assert con.execute("SELECT current_version FROM jammi.embedding_status").fetchone()[0] == 1


BEGIN_TABLE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from jammi.spec.catalog import PostgresCatalogSpec
    from jammi.tables.catalog import Catalog

    artifacts, dsn, schema, name = sys.argv[1:5]
    catalog = Catalog(Path(artifacts), postgres=PostgresCatalogSpec.model_validate(
        {"postgres": dsn, "schema": schema}))
    catalog.begin_table({"table_name": name, "pipeline": "p", "source": "s", "model_id": "m",
                         "text_columns": ["title"], "key_column": "id", "generation": "g1",
                         "parquet_path": catalog.artifact_dir / "jammi_db" / f"{name}.parquet"})
""")


def state_seq(schema: str) -> int:
    with pg_connect() as conn:
        return conn.execute(f'SELECT seq FROM "{schema}"._jammi_state').fetchone()[0]


def test_a_searcher_sees_another_process_commit_by_notification_not_by_polling(tmp_path, schema,
                                                                               monkeypatch):
    """Catalog.stamp (what a search checks before each query) costs no round trip while
    nothing was committed; another process's commit arrives as a notification; a killed
    listening connection is replaced and the sequence asked again."""
    from jammi.tables import catalog_pg

    monkeypatch.setattr(catalog_pg, "WATCH_RECHECK_S", 3600.0)  # only notifications can tell
    catalog = Catalog(tmp_path / "reader", postgres=pg_spec(schema))
    begin(catalog, "t1")
    first = catalog.stamp()
    assert first == (catalog.pg.identity, state_seq(schema))
    before = catalog.round_trips
    assert all(catalog.stamp() == first for _ in range(200))
    assert catalog.round_trips == before

    def commit_elsewhere(name: str) -> None:
        subprocess.run([sys.executable, "-c", BEGIN_TABLE, str(tmp_path / "writer"), DSN, schema, name],
                       check=True, cwd=REPO, timeout=120)

    def seen(seq: int) -> float:
        start = time.monotonic()
        while catalog.stamp()[1] != seq:
            assert time.monotonic() - start < 5, f"sequence {seq} not seen after 5 s"
            time.sleep(0.005)
        return time.monotonic() - start

    commit_elsewhere("t2")
    assert seen(state_seq(schema)) < 5
    assert catalog.table("t2").status == "building"
    with pg_connect() as admin:  # the listening connection dies; the next stamp reconnects
        admin.execute("SELECT pg_terminate_backend(%s)", [catalog.pg._watch.conn.info.backend_pid])
    commit_elsewhere("t3")
    assert catalog.stamp()[1] == state_seq(schema)  # asked again, not waited for


def test_a_terminated_connection_is_replaced_and_a_failed_write_leaves_nothing(tmp_path, schema):
    catalog = Catalog(tmp_path / "artifacts", postgres=pg_spec(schema))
    begin(catalog, "t1")
    with pg_connect() as admin:  # what a restarted server or a killed backend does to a connection
        admin.execute("SELECT pg_terminate_backend(%s)", [catalog.pg._local.conn.info.backend_pid])
    assert catalog.table("t1").status == "building"  # the read reconnected
    with pytest.raises(Exception, match="duplicate key"):  # the same table twice: nothing committed
        begin(catalog, "t1")
    begin(catalog, "t2")  # the connection is usable again
    assert [t.table_name for t in catalog.tables()] == ["t2", "t1"]
    with pg_connect() as conn:
        assert conn.execute(f'SELECT seq FROM "{schema}"._jammi_state').fetchone()[0] == 2


def test_a_commit_under_a_lost_pipeline_lock_is_refused(tmp_path, schema):
    """A pipeline lock is a session lock on a connection of its own: when that connection ends
    (a terminated backend, a restarted server) another writer may take the lock, so a commit
    made under it checks, in its own transaction, that the lock is still held."""
    catalog = Catalog(tmp_path / "artifacts", postgres=pg_spec(schema))
    begin(catalog, "t1")
    catalog.activate("t1", first=first_version("t1", 3), rows_embedded=3)
    with catalog.pipeline_lock("p"):
        base = catalog.current_version(catalog.table("t1"))
        one = Version("t1", 1, (*base.segments, FileRef("a.parquet", 1)), rows=4)
        catalog.commit_version("p", one, base)  # held: committed as before
        backend = catalog.pg._held["p"][2].info.backend_pid
        with pg_connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [backend])
            deadline = time.monotonic() + 10
            alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
            while admin.execute(alive, [backend]).fetchone()[0]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        seq = state_seq(schema)
        two = Version("t1", 2, (*one.segments, FileRef("b.parquet", 1)), rows=5)
        with pytest.raises(ArtifactError, match="pipeline lock ended .* nothing was committed"):
            catalog.commit_version("p", two, one)
    assert state_seq(schema) == seq
    assert catalog.current_version(catalog.table("t1")).version == 1


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from jammi.spec.catalog import PostgresCatalogSpec, configure_catalog
    from jammi.tables.catalog import Catalog
    from jammi.tables.versions import FileRef, Version

    artifacts, dsn, schema, who, n = sys.argv[1:6]
    catalog = Catalog(Path(artifacts), postgres=PostgresCatalogSpec.model_validate(
        {"postgres": dsn, "schema": schema}))
    for i in range(int(n)):
        with catalog.pipeline_lock("p"):  # what a refresh holds from reading its base to committing
            base = catalog.current_version(catalog.table("t1"))
            added = FileRef(f"{who}-{i}.parquet", 1)
            catalog.commit_version("p", Version("t1", base.version + 1, (*base.segments, added),
                                                rows=base.rows + 1), base)
""")


@pytest.mark.slow
def test_two_processes_refreshing_one_pipeline_are_serialized(tmp_path, schema):
    artifacts = tmp_path / "artifacts"
    catalog = Catalog(artifacts, postgres=pg_spec(schema))
    begin(catalog, "t1")
    catalog.activate("t1", first=first_version("t1", 1), rows_embedded=1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(artifacts), DSN, schema, who, "8"], env=env,
                              stderr=subprocess.PIPE, text=True) for who in ("a", "b")]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    current = catalog.current_version(catalog.table("t1"))
    files = {ref.file for ref in current.segments}
    assert current.version == 16 and current.rows == 17  # no commit lost, none refused
    assert files == {"t1.parquet"} | {f"{who}-{i}.parquet" for who in "ab" for i in range(8)}


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from jammi.spec.catalog import PostgresCatalogSpec, configure_catalog
    from jammi.tables.catalog import Catalog

    artifacts, dsn, schema = sys.argv[1:4]
    catalog = Catalog(Path(artifacts), postgres=PostgresCatalogSpec.model_validate(
        {"postgres": dsn, "schema": schema}))
    with catalog.pipeline_lock("p"):
        print("held", flush=True)
        time.sleep(600)
""")


@pytest.mark.slow
def test_a_sigkilled_lock_holder_releases_the_pipeline_lock(tmp_path, schema):
    catalog = Catalog(tmp_path / "artifacts", postgres=pg_spec(schema))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(catalog.artifact_dir), DSN, schema],
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PipelineBusy, match="another process is writing"):
            with catalog.pipeline_lock("p", wait_s=0.5):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        started = time.monotonic()
        with catalog.pipeline_lock("p", wait_s=20):
            waited = time.monotonic() - started
        assert waited < 5, waited  # PostgreSQL ended the dead session and its lock at once
    finally:
        holder.kill()
        holder.wait()


def write_pg_project(root: Path, csv: Path, schema: str, dsn_env: str = "JAMMI_CATALOG_DSN") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    doc = {"artifact_dir": "artifacts",
           "catalog": {"postgres": "${" + dsn_env + "}", "schema": schema},
           "sources": {"products": {"kind": "csv", "path": str(csv), "key": "id",
                                    "columns": {"id": "int", "title": "str", "body": "str"}}},
           "pipelines": {"products_pipe": {"source": "products", "text_columns": ["title", "body"]}}}
    path = root / "jammi.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_an_unreachable_catalog_is_one_line_naming_the_host_not_the_password(tmp_path, monkeypatch):
    csv = tmp_path / "p.csv"
    csv.write_text("id,title,body\n1,a,b\n", encoding="utf-8")
    monkeypatch.setenv("JAMMI_CATALOG_DSN", f"postgresql://jammi:{PASSWORD}@127.0.0.1:1/prod?connect_timeout=3")
    path = write_pg_project(tmp_path / "proj", csv, "jammi_unreachable")
    res = invoke_cli(["--project", str(path), "status"])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: catalog PostgreSQL 127.0.0.1:1/prod"), res.output
    assert "cannot connect" in lines[0] and PASSWORD not in res.output and "jammi:" not in res.output


@pytest.mark.parametrize("dsn, shown", [
    ("postgresql://jammi:pw-secret-1@db.internal:6543/prod?sslmode=require", "db.internal:6543/prod"),
    ("host=db.internal user=jammi password=pw-secret-1 dbname=prod", "db.internal:5432/prod"),
    ("postgresql://[not a dsn", "a PostgreSQL DSN"),
])
def test_a_dsn_is_named_by_host_port_and_database_only(dsn, shown):
    from jammi.redact import dsn_display, dsn_secrets, redact, remember_secrets

    assert dsn_display(dsn) == shown
    remember_secrets(dsn_secrets(dsn))  # what loading a project with this catalog does
    if "pw-secret-1" in dsn:  # echoed in a form no pattern knows, the password is still masked
        assert redact("FATAL: 'pw-secret-1' rejected") == "FATAL: '***' rejected"


def test_a_project_file_declares_the_catalog_with_its_dsn_from_the_environment(tmp_path, monkeypatch, schema):
    csv = tmp_path / "p.csv"
    csv.write_text("id,title,body\n1,a,b\n", encoding="utf-8")
    monkeypatch.setenv("JAMMI_CATALOG_DSN", DSN)
    project = load_project(write_pg_project(tmp_path / "proj", csv, schema))
    assert project.spec.catalog.postgres == DSN and project.spec.catalog.schema_name == schema
    catalog = Catalog(project.artifact_dir)  # what every step opens: the declared backend
    assert catalog.pg is not None and catalog.backend == f"postgres 127.0.0.1:5432/test (schema {schema})"
    begin(catalog, "t1")
    assert (project.artifact_dir / "state" / "catalog.postgres").exists()
    assert not (project.artifact_dir / "state" / "catalog.duckdb").exists()
    configure_catalog(project.artifact_dir, None)  # a process that opened the folder without the project
    with pytest.raises(ArtifactError, match="keeps its state in PostgreSQL"):  # no second, local catalog
        Catalog(project.artifact_dir).set_status("t1", "failed")


@pytest.mark.slow
def test_build_refresh_rollback_compact_through_the_cli(tmp_path, monkeypatch, schema):
    csv = tmp_path / "p.csv"
    rows = ["1,Red running shoes,Light trail runners", "2,Espresso machine,Fifteen bar pump",
            "3,Cast iron skillet,Heavy and even heat", "4,Yoga mat,Non-slip mat for workouts"]
    csv.write_text("id,title,body\n" + "\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setenv("JAMMI_CATALOG_DSN", DSN)
    path = str(write_pg_project(tmp_path / "proj", csv, schema))

    def cli(*args: str) -> str:
        res = invoke_cli(["--project", path, *args])
        assert res.exit_code == 0, res.output
        assert PASSWORD not in res.output
        return res.output

    cli("materialize")
    with csv.open("a", encoding="utf-8") as fh:
        fh.write("5,Trail backpack,Thirty litre pack\n")
    cli("materialize")
    versions = cli("tables", "versions", "products_pipe", "--format", "json")
    assert '"version":1' in versions.replace(" ", "")
    status = cli("status")
    assert f"catalog: postgres 127.0.0.1:5432/test (schema {schema})" in status
    assert cli("sql", "SELECT count(*) AS n FROM jammi.products_pipe_embeddings", "--format", "csv"
               ).split() == ["n", "5"]
    assert "serves version 0" in cli("tables", "rollback", "products_pipe", "--version", "0")
    assert cli("sql", "SELECT count(*) AS n FROM jammi.products_pipe_embeddings", "--format", "csv"
               ).split() == ["n", "4"]
    cli("tables", "rollback", "products_pipe", "--version", "1")
    cli("tables", "compact", "products_pipe")
    with pg_connect() as conn:  # the state is PostgreSQL's: versions 0, 1 and the compaction's 2
        found = conn.execute(f'SELECT version, rows FROM "{schema}".table_versions ORDER BY 1').fetchall()
    assert found == [(0, 4), (1, 5), (2, 5)]
    assert not (tmp_path / "proj" / "artifacts" / "state" / "catalog.duckdb").exists()
    hits = cli("search", "products_pipe", "backpack for hiking", "-k", "1", "--format", "csv")
    assert "Trail backpack" in hits
    cli("verify")  # exits 1 on any difference between source, table and index


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "postgres"])
def test_catalog_round_trips_per_embedding_step(tmp_path, request, monkeypatch, backend):
    """What an embedding step costs its catalog (Catalog.round_trips: statements sent to
    PostgreSQL, opens of the catalog files locally), measured on the steps themselves; the
    bounds are today's figures, so a change that adds a catalog read per step fails here."""
    from jammi.app.embeddings import embed_pipeline, index_pipeline
    from jammi.embedding.providers import pipeline_encoder
    from tests.conftest import materialize

    csv = tmp_path / "p.csv"
    rows = [f"{i},Product {i},A thing for everyday use number {i}" for i in range(1, 41)]
    csv.write_text("id,title,body\n" + "\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setenv("JAMMI_CATALOG_DSN", DSN)
    if backend == "postgres":
        path = write_pg_project(tmp_path / "proj", csv, request.getfixturevalue("schema"))
    else:
        path = write_pg_project(tmp_path / "proj", csv, "unused")
        doc = yaml.safe_load(path.read_text())
        del doc["catalog"]
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    project = load_project(path)
    encoder = pipeline_encoder(project.pipelines["products_pipe"], "cpu", project.artifact_dir)
    catalog = Catalog(project.artifact_dir)
    sources = ["raw_products", "validated_products", "quarantine_products"]
    assert materialize(project, selection=sources).success
    spent = {}

    def step(name, run):
        before = catalog.round_trips
        run()
        spent[name] = catalog.round_trips - before

    step("build", lambda: embed_pipeline(project, "products_pipe", encoder))
    step("index", lambda: index_pipeline(project, "products_pipe"))
    step("no_change", lambda: embed_pipeline(project, "products_pipe", encoder))
    csv.write_text("id,title,body\n" + "\n".join([*rows[:-1], "40,Product 40 changed,New text"]) + "\n")
    assert materialize(project, selection=sources).success
    step("refresh_1_row", lambda: embed_pipeline(project, "products_pipe", encoder))
    # the index step and a refresh also record the checksums of the sidecars they built, in
    # their commit: one statement more on PostgreSQL
    bounds = {"local": {"build": 16, "index": 2, "no_change": 4, "refresh_1_row": 11},
              "postgres": {"build": 29, "index": 5, "no_change": 7, "refresh_1_row": 19}}[backend]
    assert all(spent[k] <= bound for k, bound in bounds.items()), spent


@pytest.mark.slow
def test_two_partition_runs_at_once_through_dagster_lose_no_rows(tmp_path, monkeypatch, schema):
    """Two processes each materialize a partition of one source with catalog: postgres: both
    refresh the same pipeline's table, one after the other under its PostgreSQL lock."""
    from tests.test_partitions import COLUMNS, DAYS, PARTITION_RUN, reviews_rows, write_csv

    write_csv(tmp_path / "data" / "reviews.csv", reviews_rows(5)[:10])  # the first two days
    doc = {"artifact_dir": "artifacts", "catalog": {"postgres": "${JAMMI_CATALOG_DSN}", "schema": schema},
           "sources": {"reviews": {"kind": "csv", "path": "data/reviews.csv", "key": "id", "columns": COLUMNS,
                                   "partitions": {"by": "created_at", "granularity": "day",
                                                  "start": DAYS[0]}}},
           "pipelines": {"reviews_pipe": {"source": "reviews", "text_columns": ["title"]}}}
    path = tmp_path / "jammi.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "JAMMI_CATALOG_DSN": DSN, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", PARTITION_RUN, str(path), day], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for day in DAYS[:2]]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
        assert PASSWORD not in out
    monkeypatch.setenv("JAMMI_CATALOG_DSN", DSN)
    project = load_project(path)
    catalog = Catalog(project.artifact_dir)
    assert [t.status for t in catalog.tables()] == ["ready"]  # one table, refreshed by the second run
    with catalog.connect(read_only=True) as con:
        keys = sorted(r[0] for r in con.execute("SELECT _row_id FROM reviews_pipe_embeddings").fetchall())
    assert keys == sorted(str(k) for k in [100, 101, 102, 103, 104, 200, 201, 202, 203, 204])
    from jammi.app.facade import Jammi

    assert Jammi(project).verify()[0].clean
