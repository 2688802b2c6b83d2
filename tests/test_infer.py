"""Raw inference: Arrow rows per input with per-row errors, and nothing persisted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jammi.app.facade import Jammi
from jammi.embedding.encode import EMPTY_TEXT_ERROR
from jammi.embedding.infer import infer_texts
from jammi.errors import JammiError
from jammi.spec.project import DEFAULT_MODEL
from tests.conftest import invoke_cli, products_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

DIMS = 384
EXPECTED_SCHEMA = pa.schema(
    [
        ("_row_id", pa.string()),
        ("_source", pa.string()),
        ("_model", pa.string()),
        ("_status", pa.string()),
        ("_error", pa.string()),
        ("_latency_ms", pa.float64()),
        ("vector", pa.list_(pa.float32(), DIMS)),
    ]
)


def vectors(table: pa.Table) -> list[np.ndarray | None]:
    return [None if v is None else np.asarray(v, dtype=np.float32) for v in table["vector"].to_pylist()]


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def project(tmp_path: Path, products_csv: Path):
    return products_project(tmp_path, products_csv)


def test_infer_texts_schema_and_per_row_errors(encoder):
    texts = ["Red running shoes", None, "", "   \t\n", "Espresso machine"]
    table = infer_texts(encoder, texts, source="inline")

    assert table.schema.equals(EXPECTED_SCHEMA)
    assert table.schema.names == ["_row_id", "_source", "_model", "_status", "_error", "_latency_ms",
                                  "vector"]
    vtype = table.schema.field("vector").type
    assert pa.types.is_fixed_size_list(vtype)
    assert vtype.list_size == DIMS
    assert vtype.value_type == pa.float32()
    assert table.num_rows == 5
    assert table["_row_id"].to_pylist() == ["0", "1", "2", "3", "4"]
    assert table["_source"].to_pylist() == ["inline"] * 5
    assert table["_model"].to_pylist() == [DEFAULT_MODEL] * 5
    assert table["_status"].to_pylist() == ["ok", "error", "error", "error", "ok"]
    assert table["_error"].to_pylist() == [None, EMPTY_TEXT_ERROR, EMPTY_TEXT_ERROR, EMPTY_TEXT_ERROR, None]
    assert table["vector"].null_count == 3
    vecs = vectors(table)
    assert vecs[1] is None and vecs[2] is None and vecs[3] is None
    for i in (0, 4):
        assert vecs[i].shape == (DIMS,)
        assert abs(float(np.linalg.norm(vecs[i])) - 1.0) < 1e-5
    expected = encoder.encode(["Red running shoes", "Espresso machine"])
    np.testing.assert_allclose(np.vstack([vecs[0], vecs[4]]), expected, atol=1e-5)
    latency = table["_latency_ms"].to_pylist()
    assert latency[0] > 0 and latency[4] > 0
    assert latency[1] == latency[2] == latency[3] == 0.0


def test_infer_texts_row_ids_and_mismatch(encoder):
    table = infer_texts(encoder, ["alpha", "beta"], row_ids=[10, "b"], source="mine")
    assert table["_row_id"].to_pylist() == ["10", "b"]
    assert table["_source"].to_pylist() == ["mine", "mine"]
    with pytest.raises(ValueError, match="2 row ids for 3 texts"):
        infer_texts(encoder, ["a", "b", "c"], row_ids=["x", "y"])


def test_infer_texts_all_empty(encoder):
    table = infer_texts(encoder, [None, " "])
    assert table.schema.equals(EXPECTED_SCHEMA)
    assert table["_status"].to_pylist() == ["error", "error"]
    assert table["vector"].to_pylist() == [None, None]


def test_jammi_infer_source_writes_nothing(project, encoder, tmp_path: Path):
    before = files_under(tmp_path)
    jammi = Jammi(project)
    table = jammi.infer(source="products")

    assert table.schema.equals(EXPECTED_SCHEMA)
    assert table["_row_id"].to_pylist() == ["1", "2", "3", "4", "5", "6"]
    assert table["_source"].to_pylist() == ["products"] * 6
    assert table["_model"].to_pylist() == [DEFAULT_MODEL] * 6
    assert table["_status"].to_pylist() == ["ok", "ok", "ok", "error", "ok", "ok"]
    assert table["_error"].to_pylist()[3] == EMPTY_TEXT_ERROR
    vecs = vectors(table)
    assert vecs[3] is None
    ok = [vecs[i] for i in (0, 1, 2, 4, 5)]
    np.testing.assert_allclose(np.linalg.norm(np.vstack(ok), axis=1), 1.0, atol=1e-5)
    # the text is the pipeline's columns joined with a space; an empty body is left out
    expected = encoder.encode(["Red running shoes Light trail runners for wet weather",
                               "Cast iron skillet"])
    np.testing.assert_allclose(np.vstack([vecs[0], vecs[2]]), expected, atol=1e-5)

    # nothing persisted: no artifact dir, no frames, no jammi_db, no catalog
    assert not project.artifact_dir.exists()
    assert files_under(tmp_path) == before
    assert not any(p.name in ("frames", "jammi_db", "jammi.duckdb") for p in tmp_path.rglob("*"))


def test_jammi_infer_source_columns_and_limit(project, encoder):
    jammi = Jammi(project, recover_on_open=False)
    table = jammi.infer(source="products", columns=["body"], limit=4)
    assert table["_row_id"].to_pylist() == ["1", "2", "3", "4"]
    assert table["_status"].to_pylist() == ["ok", "ok", "error", "error"]
    vec = np.asarray(table["vector"].to_pylist()[1], dtype=np.float32)
    np.testing.assert_allclose(vec, encoder.encode(["Fifteen bar pump and a steam wand"])[0], atol=1e-5)
    assert not project.artifact_dir.exists()


def test_jammi_infer_texts_and_errors(project, encoder):
    jammi = Jammi(project, recover_on_open=False)
    table = jammi.infer(texts=["hello", ""])
    assert table["_source"].to_pylist() == ["inline", "inline"]
    assert table["_status"].to_pylist() == ["ok", "error"]
    with pytest.raises(JammiError, match="either a source or texts"):
        jammi.infer()
    with pytest.raises(JammiError, match="either a source or texts"):
        jammi.infer(source="products", texts=["x"])
    with pytest.raises(JammiError, match="unknown source 'nope'"):
        jammi.infer(source="nope")
    with pytest.raises(JammiError, match=r"unknown column\(s\) \['colour'\]"):
        jammi.infer(source="products", columns=["colour"])
    assert not project.artifact_dir.exists()


def test_cli_infer_json(project, encoder):
    result = invoke_cli(["--project", str(project.path), "infer", "a", "", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["_row_id"] for r in rows] == ["0", "1"]
    assert [r["_status"] for r in rows] == ["ok", "error"]
    assert rows[0]["_error"] is None
    assert rows[1]["_error"] == EMPTY_TEXT_ERROR
    assert rows[0]["_source"] == "inline"
    assert rows[0]["_model"] == DEFAULT_MODEL
    assert rows[1]["vector"] is None
    vec = np.asarray(rows[0]["vector"], dtype=np.float32)
    assert vec.shape == (DIMS,)
    np.testing.assert_allclose(vec, encoder.encode(["a"])[0], atol=1e-5)
    assert not project.artifact_dir.exists()


def test_cli_infer_table_format(project, encoder):
    result = invoke_cli(["--project", str(project.path), "infer", "hello", "  "])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3  # header + two rows
    assert "(384)" in lines[1] and " ok " in lines[1]
    # the error row: status, the start of the message (the table fits 100 columns), no vector
    assert " error " in lines[2] and EMPTY_TEXT_ERROR[:10] in lines[2] and "(384)" not in lines[2]
    assert all(len(line) <= 100 for line in lines)


@pytest.mark.parametrize(
    "args, message",
    [
        (["infer"], "error: give TEXTS to embed or --source NAME"),
        (["infer", "x", "--source", "products"], "error: give either TEXTS or --source, not both"),
        (["infer", "--source", "nope"], "error: unknown source 'nope' (declared: products)"),
        (["infer", "x", "--model", "no-such-org/no-such-model"], "error: model 'no-such-org/no-such-model'"),
    ],
    ids=["nothing", "both", "unknown-source", "unknown-model"],
)


def test_cli_infer_errors(project, args, message):
    result = invoke_cli(["--project", str(project.path), *args])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(message)
    assert "Traceback" not in result.output
    assert not project.artifact_dir.exists()
