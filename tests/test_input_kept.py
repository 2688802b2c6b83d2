"""Input is kept or refused, never changed (issue 28, reproduction 9): a NUL byte does not cut a
CSV cell, a lone surrogate in JSON Lines neither vanishes nor fails the source, and non-finite
numbers do not pass a float column unless it declares `allow_inf: true`. Each case runs
through the functions the raw_ and validated_ assets call (store_raw, validate_source)."""

from __future__ import annotations

import pandas as pd
import pytest

from jammi import keys
from jammi.app.sources import store_raw, validate_source
from jammi.errors import ConfigError
from jammi.shared import frame_path
from jammi.silver.pandera_model import REASON_COLUMN
from jammi.silver.recipe import to_silver
from tests.conftest import PRODUCT_COLUMNS, write_project


def run_silver(tmp_path, kind: str, text: str, columns=None):
    data = tmp_path / "data" / f"products.{kind}"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(text.encode("utf-8", "surrogatepass") if kind == "csv" else text.encode("ascii"))
    project = write_project(tmp_path, {"products": {"kind": kind, "path": str(data), "key": "id",
                                                    "columns": columns or PRODUCT_COLUMNS}})
    store_raw(project, "products")
    validate_source(project, "products")

    def frame(asset):
        return pd.read_parquet(frame_path(project.artifact_dir, asset))
    return (frame(keys.raw("products")), frame(keys.validated("products")),
            frame(keys.quarantine("products")))


def reasons_of(quarantine: pd.DataFrame) -> dict[str, str]:
    return dict(zip(quarantine["id"].astype(str), quarantine[REASON_COLUMN], strict=True))


def test_nul_byte_does_not_cut_a_csv_cell(tmp_path):
    raw, valid, quarantine = run_silver(
        tmp_path, "csv", "id,title,body,price\n1,Hello\x00World,body one,1.5\n2,Plain,body two,2\n")
    assert raw.set_index("id").loc["1", "title"] == "Hello\x00World"  # whole, as it was read
    assert valid["id"].tolist() == [2]
    reasons = reasons_of(quarantine)
    assert list(reasons) == ["1"]
    assert reasons["1"].startswith("title: holds a NUL character (U+0000) at character 6")
    assert quarantine["title"].tolist() == ["Hello\x00World"]


@pytest.mark.parametrize("lone", ["\\ud800", "\\udfff", "\\uDBFF"])
def test_lone_surrogate_in_jsonl_is_quarantined_naming_the_column(tmp_path, lone):
    raw, valid, quarantine = run_silver(tmp_path, "jsonl", (
        f'{{"id": 1, "title": "a{lone}b", "body": "x", "price": 1}}\n'
        '{"id": 2, "title": "fine", "body": "y", "price": 2}\n'))
    code = lone[2:].upper()
    assert raw.set_index("id").loc[1, "title"] == f"a\\u{code.lower()}b"  # its escape: nothing vanished
    assert valid["id"].tolist() == [2]
    reasons = reasons_of(quarantine)
    assert list(reasons) == ["1"]
    assert reasons["1"].startswith(f"title: holds a lone surrogate U+{code} at character 2")


def test_surrogate_pair_in_jsonl_is_one_character_and_passes(tmp_path):
    _, valid, quarantine = run_silver(
        tmp_path, "jsonl", '{"id": 1, "title": "smile \\ud83d\\ude00", "body": "x", "price": 1}\n')
    assert valid["title"].tolist() == ["smile \U0001F600"]
    assert len(quarantine) == 0


NON_FINITE = ("id,title,body,price\n1,a,b,1e309\n2,a,b,inf\n3,a,b,Infinity\n4,a,b,-inf\n5,a,b,nan\n"
              "6,a,b,NaN\n7,a,b,2.5\n")


def test_non_finite_numbers_are_refused_in_a_float_column(tmp_path):
    columns = {**PRODUCT_COLUMNS, "price": {"type": "float", "ge": 0, "nullable": False}}
    _, valid, quarantine = run_silver(tmp_path, "csv", NON_FINITE, columns)
    assert valid["id"].tolist() == [7]
    reasons = reasons_of(quarantine)
    assert sorted(reasons) == ["1", "2", "3", "4", "5", "6"]
    for row in "1234":
        assert "price: not_infinite failed" in reasons[row] and "allow_inf: true" in reasons[row]
    for row in "56":
        assert "price: not_nan failed" in reasons[row]
    assert quarantine.set_index("id").loc["1", "price"] == "1e309"  # as it was read


def test_allow_inf_keeps_infinities_but_not_nan_in_a_non_nullable_column(tmp_path):
    columns = {**PRODUCT_COLUMNS, "price": {"type": "float", "allow_inf": True, "nullable": False}}
    _, valid, quarantine = run_silver(tmp_path, "csv", NON_FINITE, columns)
    assert dict(zip(valid["id"], valid["price"], strict=True)) == {
        1: float("inf"), 2: float("inf"), 3: float("inf"), 4: float("-inf"), 7: 2.5}
    assert sorted(reasons_of(quarantine)) == ["5", "6"]


def test_nan_in_a_nullable_float_column_without_bounds_is_kept(tmp_path):
    columns = {**PRODUCT_COLUMNS, "price": "float"}
    _, valid, quarantine = run_silver(tmp_path, "csv", "id,title,body,price\n1,a,b,nan\n2,a,b,\n", columns)
    assert valid["id"].tolist() == [1, 2] and len(quarantine) == 0


def test_allow_inf_is_for_float_columns_only(tmp_path):
    with pytest.raises(ConfigError, match="allow_inf applies to float columns only"):
        write_project(tmp_path, {"products": {"kind": "csv", "path": "x.csv", "key": "id", "columns": {
            "id": "int", "count": {"type": "int", "allow_inf": True}}}})


def test_a_stream_frame_with_a_lone_surrogate_is_quarantined(tmp_path):
    """Rows that reach validation without extraction (a stream's events) are checked too."""
    project = write_project(tmp_path, {"products": {"kind": "csv", "path": "x.csv", "key": "id",
                                                    "columns": PRODUCT_COLUMNS}})
    events = pd.DataFrame({"id": ["1", "2"], "title": ["bad \udc00", "good"], "body": ["x", "y"],
                           "price": ["1", "2"]})
    silver = to_silver(events, project.sources["products"], "products")
    assert silver.valid["id"].tolist() == [2]
    assert silver.quarantine["title"].tolist() == ["bad \\udc00"]
    assert silver.first_reason().startswith("title: holds a lone surrogate U+DC00")
