"""Issue 28, reproductions 5 and 6: a damaged state file is named and `jammi recover` rebuilds
it from the published catalog; a damaged published file is rewritten; a DuckDB client that
writes to jammi.duckdb (and leaves its WAL beside it) never makes `jammi sql` or `jammi
materialize` fail, and its writes are not kept across publishes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from jammi.tables.catalog import STATE_FILE, Catalog
from jammi.tables.published import KEEP_PRIVATE, private_dir, private_file
from tests.conftest import invoke_cli, materialize, products_project

ROWS = ("id,title,body,price\n1,Red running shoes,Light trail runners,59.5\n"
        "2,Espresso machine,Fifteen bar pump,199\n3,Yoga mat,Non-slip mat for home workouts,25\n")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A materialized project whose source path is relative, so a copy of its folder works."""
    root = tmp_path_factory.mktemp("built") / "proj"
    (root / "data").mkdir(parents=True)
    (root / "data" / "products.csv").write_text(ROWS, encoding="utf-8")
    project = products_project(root, Path("data/products.csv"))
    assert materialize(project).success
    return root


@pytest.fixture
def proj(built, tmp_path) -> Path:
    """A fresh copy of the built project: its jammi.yaml."""
    shutil.copytree(built, tmp_path / "proj")
    return tmp_path / "proj" / "jammi.yaml"


def cli(config: Path, *args: str):
    result = invoke_cli(["--project", str(config), *args])
    assert "Traceback" not in result.output, result.output
    return result


def count(config: Path) -> int:
    result = cli(config, "sql", "SELECT count(*) AS n FROM jammi.products_pipe_embeddings", "--format", "csv")
    assert result.exit_code == 0, result.output
    return int(result.output.strip().splitlines()[-1])


def flip(path: Path, offset: int, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def add_row(config: Path, line: str) -> None:
    with (config.parent / "data" / "products.csv").open("a", encoding="utf-8") as fh:
        fh.write(line)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_a_damaged_state_is_named_and_recover_rebuilds_it(proj, damage):
    state = proj.parent / "artifacts" / "state" / STATE_FILE
    Catalog(state.parent.parent).publish()  # written by this copy's folder
    if damage == "flipped":
        flip(state, 4096)  # the first data block: checksummed
    else:
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 3])
    add_row(proj, "4,Trail backpack,Thirty litre pack,89\n")

    failed = cli(proj, "materialize")
    assert failed.exit_code == 1
    assert f"catalog state {state} is damaged" in failed.output, failed.output  # before: no file named
    assert "run `jammi recover`" in failed.output
    assert count(proj) == 3  # readers read the published file, never the state

    recovered = cli(proj, "recover", "--format", "csv")  # before: a traceback
    assert recovered.exit_code == 0, recovered.output
    assert "state/catalog.duckdb,rebuilt: state damaged," in recovered.output, recovered.output
    kept = list(state.parent.glob(f"{STATE_FILE}.damaged-*"))
    assert len(kept) == 1
    assert cli(proj, "recover", "--format", "csv").output.count("rebuilt") == 0  # intact now

    assert cli(proj, "materialize").exit_code == 0
    assert count(proj) == 4
    catalog = Catalog(state.parent.parent)
    assert [t.status for t in catalog.tables()] == ["ready"]


@pytest.mark.slow
def test_a_lost_state_is_rebuilt_by_recover_and_says_so(proj):
    artifacts = proj.parent / "artifacts"
    (artifacts / "state" / STATE_FILE).unlink()
    recovered = cli(proj, "recover", "--format", "csv")
    assert recovered.exit_code == 0, recovered.output
    assert "state/catalog.duckdb,rebuilt: state lost,seeded from state/published/" in recovered.output
    assert count(proj) == 3


@pytest.mark.slow
def test_a_damaged_published_file_is_rewritten_from_the_state(proj):
    artifacts = proj.parent / "artifacts"
    catalog = Catalog(artifacts)
    catalog.publish()
    flip(catalog.path, 4096)  # the file clients open
    assert count(proj) == 3  # Jammi reads its own copy
    flip(private_file(catalog.path), 4096)  # and Jammi's own copy
    assert count(proj) == 3  # rewritten from the state on first read
    assert cli(proj, "recover").exit_code == 0
    with duckdb.connect(str(catalog.path), read_only=True) as con:  # the clients' file again whole
        assert con.execute("SELECT count(*) FROM jammi.products_pipe_embeddings").fetchone()[0] == 3


WRITER = textwrap.dedent("""
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])
    con.execute("CREATE TABLE mine AS SELECT 1 AS x")
    print("wrote", flush=True)
    sys.stdin.readline()  # hold the file open, its WAL beside it, until told
    con.execute("INSERT INTO mine SELECT 2")
    print(con.execute("SELECT count(*) FROM mine").fetchone()[0], flush=True)
    con.close()
""")


@pytest.mark.slow
def test_a_client_writing_to_the_published_file_never_breaks_jammi(proj):
    artifacts = proj.parent / "artifacts"
    catalog = Catalog(artifacts)
    catalog.publish()  # this copy's folder
    client = subprocess.Popen([sys.executable, "-c", WRITER, str(catalog.path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "wrote"
        assert (artifacts / "jammi.duckdb.wal").exists()  # the client's own WAL
        assert count(proj) == 3  # before: "WAL does not match database file"
        add_row(proj, "4,Trail backpack,Thirty litre pack,89\n")
        done = cli(proj, "materialize")
        assert done.exit_code == 0, done.output  # before: the same error
        assert count(proj) == 4
        assert not (artifacts / "jammi.duckdb.wal").exists()  # the replaced file's WAL went with it
        with duckdb.connect(str(catalog.path), read_only=True) as con:  # a new client reads the new file
            assert con.execute("SELECT count(*) FROM jammi.products_pipe_embeddings").fetchone()[0] == 4
            assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'mine'"
                               ).fetchone()[0] == 0  # a client's writes are not kept across publishes
        client.stdin.write("\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "2"  # the client goes on in its own file
        assert client.wait(timeout=30) == 0
    finally:
        client.kill()
        client.wait()
    assert count(proj) == 4
    with duckdb.connect(str(catalog.path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM jammi.products_pipe_embeddings").fetchone()[0] == 4
    # old private files are collected: the newest few stay
    assert 1 <= len(list(private_dir(catalog.path).glob("*.duckdb"))) <= KEEP_PRIVATE


def test_a_reader_whose_private_file_was_collected_reads_the_new_one(tmp_path):
    """A publish removes old private files; a reader that read the stamp before it reads it again."""
    (tmp_path / "frames").mkdir()
    catalog = Catalog(tmp_path)
    catalog.publish()
    first = private_file(catalog.path)
    for _ in range(KEEP_PRIVATE + 1):
        catalog.publish()
    assert not first.exists()
    newest = sorted(p.name for p in private_dir(catalog.path).glob("*.duckdb"))[-1]
    assert newest == private_file(catalog.path).name
    with catalog.connect(read_only=True) as con:
        assert con.execute("SELECT root FROM _published").fetchone()[0] == str(tmp_path.resolve())
    assert catalog.tables() == []
    os.unlink(private_file(catalog.path))  # gone between the stamp's read and the open
    assert catalog.tables() == []  # published again
    assert private_file(catalog.path).exists()
