"""A search filter is one boolean expression over the source's columns and reaches no file;
`jammi sql` reads the catalog and the artifact directory and writes nothing."""

from __future__ import annotations

import pytest

from jammi.app.facade import Jammi
from jammi.errors import JammiError, SearchError
from tests.conftest import PRODUCT_COLUMNS, materialize, write_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes


@pytest.fixture(scope="module")
def jammi(tmp_path_factory):
    root = tmp_path_factory.mktemp("sandbox")
    data = root / "products.csv"
    data.write_text("id,title,body,price\n1,Red running shoes,Trail runners,59.5\n"
                    "2,Espresso machine,Fifteen bar pump,199\n3,Yoga mat,Non-slip mat,25\n", encoding="utf-8")
    project = write_project(root, {"products": {"kind": "csv", "path": str(data), "key": "id",
                                                "columns": PRODUCT_COLUMNS}},
                            {"products": {"source": "products", "text_columns": ["title", "body"]}})
    assert materialize(project).success
    return Jammi(project)


def test_a_plain_filter_works(jammi):
    hits = jammi.search("products", "shoes", k=3, filter="price < 100 AND title <> 'x'")
    assert sorted(hits["_row_id"]) == ["1", "3"]


@pytest.mark.parametrize("where, message", [
    ("1=1; COPY (SELECT 42) TO '{out}'", "must be one boolean expression"),
    ("id IN (SELECT 1 FROM read_csv('/etc/passwd'))", "file system operations are disabled"),
    ("1=1) UNION ALL (SELECT '1' FROM read_parquet('{catalog}')", "disabled"),
    ("1=1; ATTACH '{catalog}' AS c", "must be one boolean expression"),
])
def test_a_filter_reaches_no_file(jammi, tmp_path, where, message):
    out = tmp_path / "x.csv"
    where = where.format(out=out, catalog=jammi.catalog.path)
    before = jammi.catalog.path.read_bytes()
    with pytest.raises(SearchError, match=message):
        jammi.search("products", "shoes", filter=where)
    assert not out.exists() and jammi.catalog.path.read_bytes() == before


def test_sql_reads_the_views_and_nothing_else(jammi, tmp_path):
    assert jammi.sql("SELECT count(*) AS n FROM jammi.products_embeddings")["n"][0] == 3
    out = tmp_path / "out.csv"
    for query, message in [
        (f"COPY (SELECT 42) TO '{out}'", "only reading"),
        (f"EXPORT DATABASE '{tmp_path / 'dump'}'", "only reading"),
        ("SELECT * FROM read_csv('/etc/passwd')", "SQL failed"),
        ("SELECT 1; SELECT 2", "one statement only"),
        ("DROP VIEW products_embeddings", "only reading"),
    ]:
        with pytest.raises(JammiError, match=message):
            jammi.sql(query)
    assert not out.exists() and not (tmp_path / "dump").exists()


def test_a_view_that_does_not_exist_is_named_with_how_to_list_and_make_views(jammi):
    listed = jammi.sql("SHOW TABLES")
    assert "products_embeddings" in set(listed["name"])
    expected = (r"products_pipe_embeddings does not exist.*`jammi sql \"SHOW TABLES\"` lists them, "
                r"`jammi materialize` makes the missing ones")
    with pytest.raises(JammiError, match=expected):
        jammi.sql("SELECT count(*) FROM jammi.products_pipe_embeddings")
