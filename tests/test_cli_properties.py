"""Property: whatever a user types as a search filter, a name, a table argument or a SQL query,
the CLI changes nothing outside the artifact directory, leaves the catalog's state untouched,
and answers with a result or a one-line error, never a traceback (issue 11)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jammi.tables.catalog import Catalog
from tests.conftest import PRODUCT_COLUMNS, invoke_cli, materialize, write_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

HOSTILE = [
    "1=1; COPY (SELECT 42) TO '{out}/x.csv'",
    "price > 0) OR (SELECT count(*) FROM read_csv('/etc/passwd')) > 0 OR (1=1",
    "1=1; ATTACH '{catalog}' AS c; DROP VIEW c.products_pipe_embeddings",
    "1=1; INSERT INTO embedding_tables VALUES ('x')",
    "title LIKE '%' UNION SELECT * FROM read_text('{out}/secret.txt')",
    "(SELECT count(*) FROM glob('/*')) > 0",
    "price > 0; EXPORT DATABASE '{out}/dump'",
    "title = 'x'--",
    "getenv('HOME') IS NOT NULL",
    "price > 10",
]
SQL = [
    "COPY (SELECT 42) TO '{out}/y.csv'",
    "SELECT * FROM read_csv('{out}/secret.txt')",
    "EXPORT DATABASE '{out}/dump2'",
    "ATTACH '{catalog}' AS c",
    "SELECT 1; DROP VIEW products_pipe_embeddings",
    "INSTALL httpfs",
    "SELECT count(*) FROM jammi.products_pipe_embeddings",
    "SET enable_external_access = true",
]
NAMES = ["products_pipe", "products", "../../etc/passwd", "products_pipe; DROP TABLE x", "", "' OR 1=1"]


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Every file under `root` outside `skip`, by content hash."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and skip not in p.parents}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("props")
    data = root / "data" / "products.csv"
    data.parent.mkdir(parents=True)
    data.write_text("id,title,body,price\n" + "".join(
        f"{i},Product {i},Body of item {i},{i}.5\n" for i in range(1, 21)), encoding="utf-8")
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_text("do not read\n", encoding="utf-8")
    project = write_project(
        root / "proj",
        sources={"products": {"kind": "csv", "path": str(data), "key": "id", "columns": PRODUCT_COLUMNS}},
        pipelines={"products_pipe": {"source": "products", "text_columns": ["title", "body"]}},
    )
    assert materialize(project).success
    return root, project


def fill(text: str, root: Path, project) -> str:
    return (text.replace("{out}", str(root / "outside"))
            .replace("{catalog}", str(Catalog(project.artifact_dir).path)))


def hostile_or_random(options: list[str]):
    return st.one_of(st.sampled_from(options), st.text(max_size=60),
                     st.tuples(st.sampled_from(options), st.text(max_size=20)).map("".join))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["filter", "sql", "name", "table"]),
       filt=hostile_or_random(HOSTILE), sql=hostile_or_random(SQL), name=hostile_or_random(NAMES),
       table=hostile_or_random(NAMES))
def test_cli_input_changes_nothing_outside_and_never_the_catalog(world, command, filt, sql, name, table):
    root, project = world
    catalog = Catalog(project.artifact_dir)
    before_files = snapshot(root, project.artifact_dir)
    before_state = catalog.state_path.read_bytes()
    args = ["--project", str(project.path)]
    args += {
        "filter": ["search", "products_pipe", "item", "-k", "3", "--filter", fill(filt, root, project)],
        "sql": ["sql", fill(sql, root, project)],
        "name": ["search", name, "item", "-k", "2"],
        "table": ["search", "products_pipe", "item", "--table", table],
    }[command]
    result = invoke_cli(args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{args}: {type(result.exception).__name__}: {result.exception}")
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        errors = [line for line in result.output.splitlines() if line.startswith(("error", "Error"))]
        assert errors, result.output
    assert snapshot(root, project.artifact_dir) == before_files
    assert catalog.state_path.read_bytes() == before_state
