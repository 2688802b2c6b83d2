"""Crash recovery: a real SIGKILL in the middle of a build, and tables stuck in `building`
with a valid, a corrupt or a missing Parquet file, or with a builder that is still alive."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jammi.query.search import search
from jammi.storage import tmp_path as temp_file_of
from jammi.tables.catalog import (
    STATUS_BUILDING,
    STATUS_FAILED,
    STATUS_READY,
    TABLES_DIR,
    Catalog,
    TableRecord,
    this_builder,
)
from jammi.tables.contract import read_manifest, sidecar
from jammi.tables.index import load_index
from jammi.tables.recovery import builder_alive, recover
from tests.conftest import (
    REPO,
    invoke_cli,
    materialize,
    products_project,
    ready_tables,
)

DEAD_BUILDER = f"{socket.gethostname()}:999999:1.0"
KILL_ROWS = 3000


def only_table(project) -> TableRecord:
    tables = Catalog(project.artifact_dir).tables()
    assert len(tables) == 1, tables
    return tables[0]


def materialized(root: Path, products_csv: Path):
    project = products_project(root, products_csv)
    result = materialize(project)
    assert result.success
    rec = only_table(project)
    assert rec.status == STATUS_READY
    return project, rec


def set_stuck(project, table_name: str, builder: str | None = DEAD_BUILDER) -> None:
    """What a crash after begin_table leaves: status building, counts not yet recorded."""
    with Catalog(project.artifact_dir).connect() as con:
        con.execute(
            "UPDATE embedding_tables SET status = ?, builder = ?, rows_embedded = 0, error = NULL"
            " WHERE table_name = ?",
            [STATUS_BUILDING, builder, table_name],
        )
    assert Catalog(project.artifact_dir).table(table_name).status == STATUS_BUILDING


# --- a) a real SIGKILL in the middle of embedding -------------------------------------------


def wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"materialize exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_sigkill_mid_build_then_recover_and_rebuild(tmp_path: Path):
    csv = tmp_path / "data" / "products.csv"
    csv.parent.mkdir(parents=True)
    lines = ["id,title,body,price"]
    lines += [f"{i},Product {i} red shoes,Item {i} for wet weather,{i % 50}.5"
              for i in range(1, KILL_ROWS + 1)]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    project = products_project(tmp_path / "proj", csv)
    tables_dir = project.artifact_dir / TABLES_DIR
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DAGSTER_HOME": str(dagster_home),
           "TOKENIZERS_PARALLELISM": "false"}
    log = tmp_path / "materialize.log"

    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jammi_assets.cli", "--project", str(project.path), "materialize"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            tmp_files = wait_for(
                lambda: sorted(tables_dir.glob(".*.parquet.*.tmp")) if tables_dir.exists() else [],
                proc, 180, "the temp Parquet file appeared", log,
            )
            time.sleep(1.0)  # well inside the embedding of the first window
            assert proc.poll() is None, "the build finished before it could be killed"
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # what the crash left: a building table owned by the dead pid and its temp file
    assert len(tmp_files) == 1
    tmp_file = tmp_files[0]
    assert tmp_file.exists()
    catalog = Catalog(project.artifact_dir)
    killed = only_table(project)
    assert killed.status == STATUS_BUILDING
    assert killed.builder.split(":")[:2] == [socket.gethostname(), str(proc.pid)]
    assert not builder_alive(killed.builder)
    assert tmp_file.name == f".{killed.parquet_path.name}.{proc.pid}.tmp"  # named for its writer
    assert not killed.parquet_path.exists()
    assert catalog.tables(status=STATUS_READY) == []

    actions = recover(catalog)

    assert [(a.table_name, a.action) for a in actions] == [(killed.table_name, "failed: parquet missing")]
    assert not tmp_file.exists()
    assert not killed.parquet_path.exists()
    after = catalog.table(killed.table_name)
    assert after.status == STATUS_FAILED
    assert "Parquet missing" in after.error
    assert catalog.tables(status=STATUS_READY) == []
    assert catalog.tables(status=STATUS_BUILDING) == []
    assert recover(catalog) == []  # settled: a second pass does nothing

    # a fresh materialization after the crash succeeds with every row
    result = materialize(project)
    assert result.success
    ready = ready_tables(project)
    assert len(ready) == 1
    assert ready[0].table_name != killed.table_name
    assert ready[0].rows_embedded == KILL_ROWS
    assert pq.read_metadata(ready[0].parquet_path).num_rows == KILL_ROWS
    assert catalog.table(killed.table_name).status == STATUS_FAILED
    assert not list(tables_dir.glob(".*.tmp"))
    with catalog.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM products_pipe_embeddings").fetchone()[0] == KILL_ROWS


# --- b) valid Parquet stuck in building -----------------------------------------------------


@pytest.mark.slow
def test_checked_table_stuck_in_building_is_promoted_with_its_counts_and_checks(tmp_path, products_csv):
    """Killed between its checks (manifest ready, counts and outcomes in it) and its switch."""
    project, rec = materialized(tmp_path / "proj", products_csv)
    before = search(project, "products_pipe", "espresso coffee machine", k=3)
    manifest = read_manifest(rec.base_path)
    assert manifest["status"] == STATUS_READY and manifest["rows_skipped"] == 1
    assert {c["name"] for c in manifest["checks"]} >= {"row_count", "unit_norm", "source_table_parity"}
    set_stuck(project, rec.table_name)
    with Catalog(project.artifact_dir).connect() as con:
        con.execute("UPDATE embedding_tables SET rows_skipped = 0")
        con.execute("DELETE FROM quality_report")
    for suffix in (".usearch", ".rowmap"):
        sidecar(rec.base_path, suffix).unlink()
    assert ready_tables(project) == []

    actions = recover(Catalog(project.artifact_dir))

    assert len(actions) == 1
    assert actions[0].table_name == rec.table_name
    assert actions[0].action == "ready: promoted, index rebuilt"
    assert actions[0].detail.startswith("5 rows")
    after = only_table(project)
    assert after.status == STATUS_READY
    assert (after.rows_embedded, after.rows_skipped) == (5, 1)  # the builder's counts, not zeros
    with Catalog(project.artifact_dir).connect(read_only=True) as con:
        checks = dict(con.execute("SELECT check_name, passed FROM quality_report"
                                  " WHERE asset = 'products_pipe_embeddings'").fetchall())
    assert checks["row_count"] is True and checks["source_table_parity"] is True
    for suffix in (".usearch", ".rowmap"):
        assert sidecar(rec.base_path, suffix).is_file()
    index, rowmap = load_index(rec.base_path, after.rows_embedded)  # raises if unusable
    assert len(index) == 5
    assert sorted(rowmap.row_ids.to_pylist()) == ["1", "2", "3", "5", "6"]

    hits = search(project, "products_pipe", "espresso coffee machine", k=3)
    assert hits["_row_id"].tolist()[0] == "2"
    assert hits["_row_id"].tolist() == before["_row_id"].tolist()
    np.testing.assert_allclose(hits["similarity"], before["similarity"], atol=1e-4)
    exact = search(project, "products_pipe", "espresso coffee machine", k=3, exact=True)
    assert exact["_row_id"].tolist() == hits["_row_id"].tolist()


@pytest.mark.slow
@pytest.mark.parametrize("manifest_says", ["building", "checks_failed"])
def test_unchecked_table_is_never_promoted(tmp_path, products_csv, manifest_says):
    """Killed right after the final Parquet appeared, before its checks finished (issue 11.7):
    the table is failed and its files removed; the next run builds it again, checked."""
    project, rec = materialized(tmp_path / "proj", products_csv)
    set_stuck(project, rec.table_name)
    manifest = read_manifest(rec.base_path)
    if manifest_says == "building":
        manifest["status"] = STATUS_BUILDING
        del manifest["checks"]
    else:
        manifest["checks"][0]["passed"] = False
        manifest["checks"][0]["severity"] = "error"
    sidecar(rec.base_path, ".manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    actions = recover(Catalog(project.artifact_dir))

    assert [(a.table_name, a.action) for a in actions] == [(rec.table_name, "failed: checks never finished")]
    after = only_table(project)
    assert after.status == STATUS_FAILED and "quality checks" in after.error
    assert not rec.parquet_path.exists()
    assert materialize(project).success
    ready = ready_tables(project)
    assert len(ready) == 1 and ready[0].rows_embedded == 5 and ready[0].rows_skipped == 1


# --- c) corrupt Parquet stuck in building ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_parquet_is_deleted_and_failed(tmp_path, products_csv, damage):
    project, rec = materialized(tmp_path / "proj", products_csv)
    data = rec.parquet_path.read_bytes()
    if damage == "garbage":
        rec.parquet_path.write_bytes(b"this is not a parquet file" * 40)
    else:
        rec.parquet_path.write_bytes(data[: len(data) // 2])
    set_stuck(project, rec.table_name)

    actions = recover(Catalog(project.artifact_dir))

    assert [(a.table_name, a.action) for a in actions] == [(rec.table_name, "failed: parquet corrupt")]
    assert actions[0].detail
    assert not rec.parquet_path.exists()
    for suffix in (".usearch", ".rowmap"):
        assert not sidecar(rec.base_path, suffix).exists()
    after = only_table(project)
    assert after.status == STATUS_FAILED
    assert after.error.startswith("recovery: corrupt Parquet deleted")
    assert ready_tables(project) == []
    with Catalog(project.artifact_dir).connect(read_only=True) as con:
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal")
                 .fetchall()}
    assert rec.table_name not in views


@pytest.mark.slow
def test_wrong_dimensions_count_as_corrupt(tmp_path, products_csv):
    project, rec = materialized(tmp_path / "proj", products_csv)
    set_stuck(project, rec.table_name)
    with Catalog(project.artifact_dir).connect() as con:
        con.execute("UPDATE embedding_tables SET dimensions = 768 WHERE table_name = ?", [rec.table_name])
    actions = recover(Catalog(project.artifact_dir))
    assert [a.action for a in actions] == ["failed: parquet corrupt"]
    assert "768" in actions[0].detail
    assert not rec.parquet_path.exists()


# --- d) a live builder is left alone ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["this-process", "other-host"])
def test_live_builder_is_left_alone(tmp_path, products_csv, builder):
    project, rec = materialized(tmp_path / "proj", products_csv)
    owner = this_builder() if builder == "this-process" else "some-other-host:1234:1.0"
    set_stuck(project, rec.table_name, owner)
    partial = temp_file_of(rec.parquet_path)
    partial.write_bytes(b"PAR1 partial")
    rec.parquet_path.write_bytes(b"not yet renamed garbage")

    assert builder_alive(owner)
    actions = recover(Catalog(project.artifact_dir))

    assert actions == []
    after = only_table(project)
    assert after.status == STATUS_BUILDING
    assert after.builder == owner
    assert partial.exists()
    assert rec.parquet_path.read_bytes() == b"not yet renamed garbage"


def test_builder_alive_rules():
    host = socket.gethostname()
    me = this_builder()
    assert builder_alive(me)
    pid, started = me.split(":")[1:]
    assert builder_alive(f"{host}:{pid}:")  # no start time: the pid alone decides
    assert started.startswith("t")  # Linux: the start in clock ticks since boot
    assert not builder_alive(f"{host}:{pid}:t{int(started[1:]) - 1000}")  # pid reused
    import psutil

    created = psutil.Process().create_time()  # the older wall-clock form, still honoured
    assert builder_alive(f"{host}:{pid}:{created:.3f}")
    assert builder_alive(f"{host}:{pid}:{created + 1.0:.3f}")  # the boot time moved by a second
    assert not builder_alive(f"{host}:{pid}:{created - 1000:.3f}")
    assert not builder_alive(f"{host}:x:t1")
    assert not builder_alive(DEAD_BUILDER)
    assert not builder_alive(None)
    assert not builder_alive("")
    assert not builder_alive(f"{host}:not-a-pid:1.0")
    assert builder_alive("another-machine:1:1.0")


def test_recover_without_catalog_does_nothing(tmp_path):
    assert recover(Catalog(tmp_path / "nothing-here")) == []
    assert not (tmp_path / "nothing-here").exists()


# --- e) the CLI -------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_recover_prints_actions(tmp_path, products_csv):
    project, rec = materialized(tmp_path / "proj", products_csv)
    set_stuck(project, rec.table_name)
    sidecar(rec.base_path, ".usearch").unlink()
    # a second stuck table whose Parquet never got written
    ghost = rec.table_name.replace("__embedding__", "__embedding__ghost-")
    ghost_path = rec.parquet_path.with_name(f"{ghost}.parquet")
    with Catalog(project.artifact_dir).connect() as con:
        con.execute(
            "INSERT INTO embedding_tables SELECT * REPLACE (? AS table_name, ? AS parquet_path)"
            " FROM embedding_tables WHERE table_name = ?",
            [ghost, str(ghost_path), rec.table_name],
        )
    args = ["--project", str(project.path), "recover"]

    result = invoke_cli([*args, "--format", "json"])

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {(r["table_name"], r["action"]) for r in rows} == {
        (rec.table_name, "ready: promoted, index rebuilt"),
        (ghost, "failed: parquet missing"),
    }
    catalog = Catalog(project.artifact_dir)
    assert catalog.table(rec.table_name).status == STATUS_READY
    assert catalog.table(ghost).status == STATUS_FAILED
    assert sidecar(rec.base_path, ".usearch").is_file()

    again = invoke_cli(args)
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "(no rows)"


@pytest.mark.slow
def test_cli_search_recovers_only_when_nothing_ready_serves(tmp_path, products_csv):
    """`jammi search` skips recovery while a ready table serves (recovery could not change what it
    finds), and runs it when the search finds nothing ready: the stuck table is promoted and found."""
    project, rec = materialized(tmp_path / "proj", products_csv)
    args = ["--project", str(project.path), "search", "products_pipe", "espresso coffee machine", "-k", "3",
            "--format", "json"]
    ghost = rec.table_name.replace("__embedding__", "__embedding__ghost-")
    with Catalog(project.artifact_dir).connect() as con:  # a dead build beside the serving table
        con.execute(
            "INSERT INTO embedding_tables SELECT * REPLACE (? AS table_name, ? AS parquet_path, ? AS status,"
            " ? AS builder) FROM embedding_tables WHERE table_name = ?",
            [ghost, str(rec.parquet_path.with_name(f"{ghost}.parquet")), STATUS_BUILDING, DEAD_BUILDER,
             rec.table_name],
        )
    served = invoke_cli(args)
    assert served.exit_code == 0, served.output
    assert Catalog(project.artifact_dir).table(ghost).status == STATUS_BUILDING  # not recovered

    set_stuck(project, rec.table_name)
    found = invoke_cli(args)

    assert found.exit_code == 0, found.output
    ids = [[r["_row_id"] for r in json.loads(out.stdout)] for out in (served, found)]
    assert ids[0] == ids[1] and ids[0][0] == "2"
    catalog = Catalog(project.artifact_dir)
    assert catalog.table(rec.table_name).status == STATUS_READY
    assert catalog.table(ghost).status == STATUS_FAILED


@pytest.mark.slow
def test_cli_recover_table_format(tmp_path, products_csv):
    project, rec = materialized(tmp_path / "proj", products_csv)
    rec.parquet_path.unlink()
    set_stuck(project, rec.table_name)
    result = invoke_cli(["--project", str(project.path), "recover"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["table_name", "action", "detail"]
    assert len(lines) == 2
    assert rec.table_name in lines[1] and "failed: parquet missing" in lines[1]
