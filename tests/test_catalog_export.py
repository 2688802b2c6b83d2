"""`jammi catalog export PATH`: the catalog as one DuckDB file that a plain DuckDB client opens
(no Jammi installed): its views read the same rows `jammi sql` does; nothing before the first
materialization. The object-store case is in tests/test_object_store_reach.py."""

from __future__ import annotations

import duckdb
import pytest

from tests.conftest import invoke_cli, materialize, products_project

pytestmark = pytest.mark.slow


def test_an_exported_catalog_opens_in_a_plain_client_with_the_same_rows(tmp_path, products_csv):
    project = products_project(tmp_path / "proj", products_csv)
    missing = invoke_cli(["--project", str(project.path), "catalog", "export", str(tmp_path / "x.duckdb")])
    assert missing.exit_code == 1 and "run `jammi materialize` first" in missing.output
    assert materialize(project).success
    target = tmp_path / "out" / "shared.duckdb"
    result = invoke_cli(["--project", str(project.path), "catalog", "export", str(target)])
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {target}\n"
    query = ("SELECT count(*), count(DISTINCT _row_id) FROM products_pipe_embeddings")
    with duckdb.connect(str(target), read_only=True) as con:  # any client, Jammi not involved
        assert con.execute(query).fetchone() == (5, 5)
        assert con.execute("SELECT count(*) FROM validated_products").fetchone()[0] == 6
    sql = invoke_cli(["--project", str(project.path), "sql", query.replace("FROM ", "FROM jammi."),
                      "--format", "json"])
    assert sql.exit_code == 0 and '"count_star()": 5' in sql.output, sql.output
