"""Shared fixtures: tiny projects written to tmp dirs, the real packaged model, and a
materialize() helper over an ephemeral Dagster instance."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("COLUMNS", None)  # tables are laid out for a pipe (100 columns), whoever runs the tests

from jammi.spec.project import DEFAULT_MODEL, Project, load_project  # noqa: E402
from jammi.tables.catalog import Catalog  # noqa: E402
from jammi_assets.definitions import build_assets, build_resources  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PG_DSN = "postgresql://127.0.0.1:5432/test"


def pg_connect():
    """An autocommit connection to the local PostgreSQL; the test skips, saying why, when it is
    unreachable."""
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(PG_DSN, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL at {PG_DSN} is unreachable: {str(err).strip().splitlines()[0]}")


@pytest.fixture
def schema():
    """A fresh PostgreSQL schema name, dropped (with whatever the test made in it) afterwards."""
    import uuid

    conn = pg_connect()
    name = f"jammi_t_{uuid.uuid4().hex[:12]}"
    yield name
    conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    conn.close()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A real SeaweedFS S3 server (tests/s3_server.py) for the test module; skips, saying why,
    when it cannot start."""
    from tests import s3_server

    server = s3_server.start(tmp_path_factory.mktemp("s3"))
    yield server
    s3_server.stop(server)


@pytest.fixture
def s3_env(s3, monkeypatch, tmp_path):
    """The S3 server's endpoint and credentials in the environment, and a node cache of the
    test's own; returns the server."""
    from jammi import store

    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "node-cache"))
    return s3


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """A GCS emulator (tests/gcs_server.py) for the test module; skips, saying why, when it
    cannot start."""
    from tests import gcs_server

    server = gcs_server.start(tmp_path_factory.mktemp("gcs"))
    yield server
    gcs_server.stop(server)


@pytest.fixture
def gcs_env(gcs, monkeypatch, tmp_path):
    """The GCS emulator's endpoint in the environment (STORAGE_EMULATOR_HOST), and a node cache
    of the test's own; returns the server."""
    from jammi import store

    for name, value in gcs.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "node-cache"))
    return gcs


def new_bucket(server, prefix: str = "jammi") -> str:
    """A fresh bucket on the S3 server or the GCS emulator: its name."""
    import uuid

    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    server.filesystem().create_dir(name)
    return name


def write_project(root: Path, sources: dict, pipelines: dict | None = None,
                  artifact_dir: str = "artifacts") -> Project:
    """Write jammi.yaml under `root` and load it."""
    root.mkdir(parents=True, exist_ok=True)
    doc = {"artifact_dir": artifact_dir, "sources": sources, "pipelines": pipelines or {}}
    path = root / "jammi.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_project(path)


def materialize(project: Project, selection=None, raise_on_error: bool = False, run_config=None):
    """Run the project's assets in-process on an ephemeral instance."""
    return dg.materialize(
        build_assets(project),
        resources=build_resources(project),
        instance=dg.DagsterInstance.ephemeral(),
        selection=selection,
        raise_on_error=raise_on_error,
        run_config=run_config,
    )


def invoke_cli(args: list[str]):
    """The `jammi` command line as the console script runs it (the Dagster runner plugged in)."""
    from click.testing import CliRunner

    from jammi.cli import cli
    from jammi_assets.cli import materialize as run_graph

    return CliRunner().invoke(cli, args, obj={"materialize": run_graph})


def failure_message(result) -> str:
    """The user-facing error of the first failed step (deepest cause)."""
    for event in result.all_events:
        if event.is_step_failure:
            err = event.step_failure_data.error
            while err.cause is not None:
                err = err.cause
            return err.message
    return ""


def ready_tables(project: Project):
    return Catalog(project.artifact_dir).tables(status="ready")


@pytest.fixture(scope="session")
def encoder():
    """The real packaged all-MiniLM-L6-v2 (loaded once per test session)."""
    from jammi.embedding.model import load_encoder

    return load_encoder(DEFAULT_MODEL, "cpu")


@pytest.fixture
def products_csv(tmp_path: Path) -> Path:
    """A small clean CSV source with one null text and one empty text."""
    path = tmp_path / "data" / "products.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "id,title,body,price\n"
        "1,Red running shoes,Light trail runners for wet weather,59.5\n"
        "2,Espresso machine,Fifteen bar pump and a steam wand,199\n"
        "3,Cast iron skillet,,35\n"
        "4,,,12\n"
        "5,Noise cancelling headphones,Wireless over-ear headphones,149\n"
        "6,Yoga mat,Non-slip mat for home workouts,25\n",
        encoding="utf-8",
    )
    return path


PRODUCT_COLUMNS = {"id": "int", "title": "str", "body": "str", "price": {"type": "float", "ge": 0}}


def products_project(root: Path, products_csv: Path) -> Project:
    """One CSV source `products` (see products_csv) and one pipeline `products_pipe` over it."""
    return write_project(
        root,
        sources={"products": {"kind": "csv", "path": str(products_csv), "key": "id",
                              "columns": PRODUCT_COLUMNS}},
        pipelines={"products_pipe": {"source": "products", "text_columns": ["title", "body"]}},
    )


@pytest.fixture
def stream():
    """A fresh JetStream stream (and its dead-letter stream) on the local NATS server, deleted
    afterwards; the test skips, saying why, when the server is unreachable."""
    from tests.stream_support import Stream, require_nats

    require_nats()
    s = Stream()
    yield s
    s.delete()
