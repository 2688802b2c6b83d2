"""An empty or truncated export must not replace the serving table: the blocking check
`row_count_drop` refuses a new version or table below quality.min_row_ratio of the serving rows
(and 0 rows while the serving one has rows); search on an empty table returns no rows."""

from __future__ import annotations

import pytest

from jammi.app.facade import Jammi
from tests.conftest import failure_message, materialize, write_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

WORDS = ["kettle", "lamp", "chair", "tent", "drill", "scarf", "piano", "mug", "boots", "atlas",
         "sofa", "radio", "vase", "rope", "desk", "fan", "bowl", "clock", "bike", "kite"]


def write_rows(path, n: int) -> None:
    path.write_text("id,title\n" + "".join(f"{i},Item {i} {WORDS[i]}\n" for i in range(n)), encoding="utf-8")


def project_with(tmp_path, min_row_ratio: float | None = None):
    write_rows(tmp_path / "items.csv", 20)
    quality = {} if min_row_ratio is None else {"quality": {"min_row_ratio": min_row_ratio}}
    return write_project(tmp_path, {"items": {"kind": "csv", "path": str(tmp_path / "items.csv"), "key": "id",
                                              "columns": {"id": "int", "title": "str"}}},
                         {"items": {"source": "items", "text_columns": ["title"], **quality}})


@pytest.mark.parametrize("rows, full", [(0, False), (8, False), (0, True)])
def test_a_shrunken_export_never_replaces_the_serving_rows(tmp_path, rows, full):
    project = project_with(tmp_path)
    assert materialize(project).success
    write_rows(tmp_path / "items.csv", rows)
    config = {"ops": {"items_embeddings": {"config": {"full": True}}}} if full else None
    result = materialize(project, run_config=config)
    assert not result.success and "row_count_drop" in failure_message(result)
    jammi = Jammi(project)
    assert jammi.sql("SELECT count(*) AS n FROM jammi.items_embeddings")["n"][0] == 20
    assert jammi.sql("SELECT max(current_version) AS v FROM jammi.embedding_status")["v"][0] == 0


def test_the_ratio_is_configurable_and_an_empty_table_searches_to_no_rows(tmp_path):
    project = project_with(tmp_path, min_row_ratio=0)
    assert materialize(project).success
    write_rows(tmp_path / "items.csv", 0)
    assert materialize(project).success
    jammi = Jammi(project)
    assert jammi.sql("SELECT count(*) AS n FROM jammi.items_embeddings")["n"][0] == 0
    hits = jammi.search("items", "a desk lamp", k=3)
    assert hits.empty and list(hits.columns) == ["id", "title", "_row_id", "similarity"]
