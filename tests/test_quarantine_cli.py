"""`jammi quarantine list|readmit`: inspect quarantined rows and re-admit them once fixed
upstream, so they reach the validated frame and the embeddings."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from jammi.app.facade import Jammi
from jammi.shared import frame_path
from jammi.silver.pandera_model import REASON_COLUMN
from tests.conftest import PRODUCT_COLUMNS, invoke_cli, write_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

ROWS = (
    "id,title,body,price\n"
    "1,Red running shoes,Light trail runners,59.5\n"
    "2,Espresso machine,Fifteen bar pump,199\n"
)
BAD = "3,Cast iron skillet,Pre-seasoned pan,abc\n4,Yoga mat,Non-slip mat,-1\n"
FIXED = "3,Cast iron skillet,Pre-seasoned pan,35\n4,Yoga mat,Non-slip mat,-1\n"


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run_materialization chdirs to DAGSTER_HOME; restored after
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "products.csv").write_text(ROWS + BAD, encoding="utf-8")
    src = {"kind": "csv", "path": "data/products.csv", "key": "id", "columns": PRODUCT_COLUMNS,
           "quality": {"schema_conformance": {"max_rate": 1.0}}}
    return write_project(tmp_path, {"products": src},
                         {"products": {"source": "products", "text_columns": ["title", "body"]}})


def _jammi(project, *args):
    return invoke_cli(["--project", str(project.path), *args])


def test_list_before_materialize_and_unknown_source_fail_in_one_line(project):
    result = _jammi(project, "quarantine", "list", "products")
    assert result.exit_code == 1
    assert "quarantine_products is not materialized yet" in result.output
    result = _jammi(project, "quarantine", "list", "ghost")
    assert result.exit_code == 1
    assert result.output.strip() == "error: unknown source 'ghost' (declared: products)"
    assert _jammi(project, "quarantine", "readmit", "ghost").exit_code == 1


def test_list_then_readmit_a_fixed_row(project, tmp_path):
    done = _jammi(project, "materialize")
    assert done.exit_code == 0, done.output

    listed = _jammi(project, "quarantine", "list", "products", "--format", "json")
    assert listed.exit_code == 0, listed.output
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"3", "4"}
    assert "price" in rows["3"][REASON_COLUMN] and "abc" in rows["3"][REASON_COLUMN]
    assert "greater_than_or_equal_to" in rows["4"][REASON_COLUMN]
    limited = _jammi(project, "quarantine", "list", "products", "--format", "csv", "--limit", "1")
    assert limited.exit_code == 0 and len(limited.stdout.strip().splitlines()) == 2

    # nothing fixed yet: nothing passes and nothing is re-materialized
    unchanged = _jammi(project, "quarantine", "readmit", "products")
    assert unchanged.exit_code == 0, unchanged.output
    assert "still failing" in unchanged.stdout and "re-admitted" not in unchanged.stdout
    assert "nothing was re-materialized" in unchanged.stdout

    (tmp_path / "data" / "products.csv").write_text(ROWS + FIXED, encoding="utf-8")
    result = _jammi(project, "quarantine", "readmit", "products", "--key", "3", "--key", "4",
                    "--key", "1")
    assert result.exit_code == 0, result.output
    status = {line.split()[0]: line for line in result.stdout.splitlines()
              if line.split() and line.split()[0] in {"1", "3", "4"}}
    assert "re-admitted" in status["3"]
    assert "still failing" in status["4"] and "price" in status["4"]
    assert "not quarantined" in status["1"]
    assert "re-admitted 1 row(s)" in result.stdout

    validated = pd.read_parquet(frame_path(project.artifact_dir, "validated_products"))
    assert sorted(validated["id"].tolist()) == [1, 2, 3]
    quarantine = pd.read_parquet(frame_path(project.artifact_dir, "quarantine_products"))
    assert quarantine["id"].tolist() == ["4"]
    embedded = Jammi(project, recover_on_open=False).sql("SELECT _row_id FROM jammi.products_embeddings")
    assert sorted(embedded["_row_id"]) == ["1", "2", "3"]  # the refresh added the re-admitted row
