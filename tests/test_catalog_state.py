"""The catalog's state and its published file: a DuckDB client holding jammi.duckdb open never
blocks a writer, concurrent writer processes lose no commit while readers read, a moved
project folder keeps working, and a lost published file or state is rebuilt from the other."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from jammi.app.facade import Jammi
from jammi.spec.project import load_project
from jammi.tables.catalog import STATE_DIR, STATE_FILE, Catalog
from tests.conftest import REPO, invoke_cli, materialize, products_project

HOLDER = textwrap.dedent("""
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
    print(con.execute("SELECT count(*) FROM jammi.products_pipe_embeddings").fetchone()[0], flush=True)
    sys.stdin.readline()  # hold the file open until told
    print(con.execute("SELECT count(*) FROM jammi.products_pipe_embeddings").fetchone()[0], flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ro", "rw"])
def test_open_client_never_blocks_a_writer(tmp_path, products_csv, mode):
    project = products_project(tmp_path / "proj", products_csv)
    assert materialize(project).success
    catalog = Catalog(project.artifact_dir)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(catalog.path), mode],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "5"
        with products_csv.open("a", encoding="utf-8") as fh:
            fh.write("7,Trail backpack,Thirty litre pack with rain cover,89\n")
        started = time.monotonic()
        assert materialize(project).success  # before: "Could not set lock on file" after 60 s
        assert time.monotonic() - started < 45
        jammi = Jammi(project)
        assert jammi.sql("SELECT count(*) AS n FROM jammi.products_pipe_embeddings")["n"][0] == 6
        assert len(jammi.search("products_pipe", "backpack for hiking", k=3)) == 3
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "5"  # the client kept its snapshot
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_moved_project_folder_keeps_working(tmp_path, products_csv):
    data = tmp_path / "proj" / "data"
    data.mkdir(parents=True)
    shutil.copy(products_csv, data / "products.csv")
    project = products_project(tmp_path / "proj", Path("data/products.csv"))
    assert materialize(project).success
    with duckdb.connect(str(Catalog(project.artifact_dir).state_path), read_only=True) as con:
        stored = [r[0] for r in con.execute("SELECT parquet_path FROM embedding_tables").fetchall()]
        outputs = [r[0] for r in con.execute("SELECT path FROM asset_outputs").fetchall()]
    assert stored and all(not Path(p).is_absolute() for p in stored + outputs), stored + outputs

    shutil.move(tmp_path / "proj", tmp_path / "moved")
    assert not (tmp_path / "proj").exists()
    moved = load_project(tmp_path / "moved" / "jammi.yaml")
    jammi = Jammi(moved)
    assert jammi.sql("SELECT count(*) AS n FROM jammi.products_pipe_embeddings")["n"][0] == 5
    assert jammi.sql("SELECT count(*) AS n FROM jammi.validated_products")["n"][0] == 6
    assert jammi.search("products_pipe", "espresso coffee machine", k=1)["_row_id"].tolist() == ["2"]
    assert jammi.recover() == []
    assert materialize(moved).success
    assert [t.status for t in jammi.catalog.tables()] == ["ready"]
    result = invoke_cli(["--project", str(tmp_path / "moved" / "jammi.yaml"), "sql",
                         "SELECT count(*) AS n FROM jammi.products_latest_embeddings"])
    assert result.exit_code == 0, result.output
    assert "5" in result.output


@pytest.mark.slow
def test_lost_published_file_or_state_is_rebuilt(tmp_path, products_csv):
    project = products_project(tmp_path / "proj", products_csv)
    assert materialize(project).success
    catalog = Catalog(project.artifact_dir)
    catalog.path.unlink()
    assert [t.status for t in catalog.tables()] == ["ready"]
    assert catalog.path.exists()
    shutil.rmtree(project.artifact_dir / STATE_DIR)  # state rebuilt from the published copy
    assert Jammi(project).sql("SELECT count(*) AS n FROM jammi.products_pipe_embeddings")["n"][0] == 5
    assert materialize(project).success  # the next write seeds the state from the published copy
    assert (project.artifact_dir / STATE_DIR / STATE_FILE).exists()
    assert [t.status for t in catalog.tables()] == ["ready"]


def test_catalog_from_before_the_state_file_is_adopted(tmp_path):
    """A jammi.duckdb that was itself the catalog (tables, views, absolute paths) becomes the state."""
    artifacts = tmp_path / "artifacts"
    (artifacts / "frames").mkdir(parents=True)
    duckdb.connect().execute(f"COPY (SELECT 1 AS id) TO '{artifacts}/frames/raw_a.parquet'")
    with duckdb.connect(str(artifacts / "jammi.duckdb")) as con:
        con.execute("CREATE TABLE asset_outputs (name VARCHAR PRIMARY KEY, path VARCHAR NOT NULL,"
                    " rows BIGINT, updated_at TIMESTAMP NOT NULL)")
        con.execute("INSERT INTO asset_outputs VALUES ('raw_a', '/old/place/artifacts/frames/raw_a.parquet',"
                    " 1, now()::TIMESTAMP)")
        con.execute("CREATE VIEW raw_a AS SELECT 1 AS id")
    catalog = Catalog(artifacts)
    with catalog.connect(read_only=True) as con:
        assert con.execute("SELECT id FROM jammi.raw_a").fetchall() == [(1,)]
    with duckdb.connect(str(catalog.state_path), read_only=True) as con:
        assert con.execute("SELECT path FROM asset_outputs").fetchall() == [("frames/raw_a.parquet",)]
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchone()[0] == 0


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from jammi.quality.outcome import CheckOutcome
    from jammi.tables.catalog import Catalog
    catalog, who = Catalog(Path(sys.argv[1])), sys.argv[2]
    for i in range(int(sys.argv[3])):
        catalog.record_checks(f"{who}-{i}", "raw_a", who, [CheckOutcome("c", True, "warn", 1.0, 1.0, "")])
""")
READER = textwrap.dedent("""
    import sys, time, duckdb
    deadline, reads = time.monotonic() + float(sys.argv[2]), 0
    while time.monotonic() < deadline:
        with duckdb.connect(sys.argv[1], read_only=True) as con:
            con.execute("SELECT count(*) FROM jammi.quality_report").fetchone()
        reads += 1
    print(reads)
""")


@pytest.mark.slow
def test_concurrent_writers_lose_nothing_while_readers_read(tmp_path):
    artifacts = tmp_path / "artifacts"
    catalog = Catalog(artifacts)
    catalog.publish()
    env_python = [sys.executable, "-c"]
    writers = [subprocess.Popen([*env_python, WRITER, str(artifacts), f"w{n}", "15"], cwd=REPO,
                                stderr=subprocess.PIPE, text=True) for n in range(4)]
    readers = [subprocess.Popen([*env_python, READER, str(catalog.path), "8"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for w in writers:
        _, err = w.communicate(timeout=240)
        assert w.returncode == 0, err
    for r in readers:
        out, err = r.communicate(timeout=60)
        assert r.returncode == 0, err  # no reader saw a lock error or a half-written file
        assert int(out) > 0
    with catalog.connect(read_only=True) as con:
        runs = {r[0] for r in con.execute("SELECT run_id FROM quality_report").fetchall()}
    assert runs == {f"w{n}-{i}" for n in range(4) for i in range(15)}


@pytest.mark.slow
def test_recover_publishes_what_the_state_holds(tmp_path, products_csv):
    """A writer killed between its commit and its publish: `jammi recover` catches the file up."""
    project = products_project(tmp_path / "proj", products_csv)
    assert materialize(project).success
    catalog = Catalog(project.artifact_dir)
    stale = catalog.path.read_bytes()
    with duckdb.connect(str(catalog.state_path)) as con:  # a commit that was never published
        con.execute("UPDATE embedding_tables SET rows_skipped = 42")
    catalog.path.write_bytes(stale)
    assert catalog.tables()[0].rows_skipped == 1
    assert Jammi(project).recover() == []
    assert catalog.tables()[0].rows_skipped == 42
