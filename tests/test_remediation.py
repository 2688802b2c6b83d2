"""Remediation before validation: declared fixes applied to raw rows, counted, and wired
into the validate asset so fixed rows are admitted and unfixable ones still quarantined."""

from __future__ import annotations

import pandas as pd
import pytest

from jammi.errors import ConfigError
from jammi.silver.pandera_model import REASON_COLUMN, build_model, split_valid
from jammi.silver.remediation import FIXES, remediate
from jammi.spec.project import SourceSpec, parse_project
from jammi.tables.frames import load_frame
from tests.conftest import PRODUCT_COLUMNS, materialize, write_project

COLUMNS = {"id": "int", "title": "str", "body": "str",
           "price": {"type": "float", "ge": 0, "le": 100}, "qty": {"type": "int", "ge": 1}}


def _spec(**remediation) -> SourceSpec:
    return SourceSpec.model_validate({"kind": "csv", "path": "x.csv", "key": "id", "columns": COLUMNS,
                                      "remediation": remediation})


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["1", "2", "3", "4"],
        "title": ["  Red shoes ", "Cafe\u0301 au lait", "a \t  b", None],
        "body": [" x", "ok", "two  spaces", "fine"],
        "price": ["-5", "150", "abc", None],
        "qty": ["0", "3", "2.5", "7"],
    })


def test_remediation_is_off_by_default():
    frame = _frame()
    fixed, counts = remediate(frame, _spec())
    assert counts == dict.fromkeys(FIXES, 0)
    pd.testing.assert_frame_equal(fixed, frame)
    assert fixed is not frame


def test_trim_is_counted_and_applied():
    frame = _frame()
    fixed, counts = remediate(frame, _spec(trim=True))
    assert counts == {"trim": 2, "unicode_nfc": 0, "collapse_whitespace": 0, "clip_numeric": 0}
    assert fixed["title"].tolist()[:3] == ["Red shoes", "Cafe\u0301 au lait", "a \t  b"]
    assert fixed["body"].tolist()[0] == "x"
    assert pd.isna(fixed["title"].iloc[3])  # nulls stay null
    assert frame["title"].iloc[0] == "  Red shoes "  # the input is not modified


def test_unicode_nfc_is_counted_and_applied():
    fixed, counts = remediate(_frame(), _spec(unicode_nfc=True))
    assert counts["unicode_nfc"] == 1
    assert fixed["title"].iloc[1] == "Caf\u00e9 au lait"


def test_collapse_whitespace_is_counted_and_applied():
    fixed, counts = remediate(_frame(), _spec(collapse_whitespace=True))
    assert counts["collapse_whitespace"] == 3  # "  Red shoes ", "a \t  b", "two  spaces"
    assert fixed["title"].tolist()[:3] == [" Red shoes ", "Cafe\u0301 au lait", "a b"]
    assert fixed["body"].tolist() == [" x", "ok", "two spaces", "fine"]


def test_all_string_fixes_together():
    fixed, counts = remediate(_frame(), _spec(trim=True, unicode_nfc=True, collapse_whitespace=True))
    assert fixed["title"].tolist()[:3] == ["Red shoes", "Caf\u00e9 au lait", "a b"]
    assert counts == {"trim": 2, "unicode_nfc": 1, "collapse_whitespace": 2, "clip_numeric": 0}


def test_columns_restrict_the_fixes():
    fixed, counts = remediate(_frame(), _spec(trim=True, clip_numeric=True, columns=["body", "qty"]))
    assert fixed["title"].iloc[0] == "  Red shoes "
    assert fixed["body"].iloc[0] == "x"
    assert fixed["price"].tolist()[:3] == ["-5", "150", "abc"]
    assert fixed["qty"].tolist() == [1, "3", "2.5", "7"]
    assert counts == {"trim": 1, "unicode_nfc": 0, "collapse_whitespace": 0, "clip_numeric": 1}


def test_clip_numeric_parses_strings_and_leaves_unparseable_values():
    frame = _frame()
    fixed, counts = remediate(frame, _spec(clip_numeric=True))
    assert fixed["price"].tolist()[:3] == [0.0, 100.0, "abc"]
    assert pd.isna(fixed["price"].iloc[3])
    assert fixed["qty"].tolist() == [1, "3", "2.5", "7"]
    assert counts["clip_numeric"] == 3
    assert frame["price"].tolist()[:3] == ["-5", "150", "abc"]


def test_clip_numeric_on_native_numbers():
    spec = _spec(clip_numeric=True)
    frame = pd.DataFrame({"id": [1, 2, 3], "title": ["a", "b", "c"], "body": ["x", "y", "z"],
                          "price": [-1.5, 50.0, float("nan")], "qty": [0, 5, -3]})
    fixed, counts = remediate(frame, spec)
    assert fixed["price"].tolist()[:2] == [0.0, 50.0] and pd.isna(fixed["price"].iloc[2])
    assert fixed["qty"].tolist() == [1, 5, 1]
    assert counts["clip_numeric"] == 3


def test_unparseable_value_is_still_quarantined():
    spec = _spec(clip_numeric=True, trim=True)
    fixed, _ = remediate(_frame().assign(qty="2"), spec)
    valid, quarantine = split_valid(fixed, build_model("products", spec))
    assert sorted(valid["id"].tolist()) == [1, 2, 4]
    assert valid.set_index("id").loc[1, "price"] == 0.0
    assert valid.set_index("id").loc[2, "price"] == 100.0
    assert quarantine["id"].tolist() == ["3"]
    assert "price" in quarantine[REASON_COLUMN].iloc[0]


@pytest.mark.parametrize(
    ("remediation", "message"),
    [
        ({"columns": ["nope"]}, "remediation.columns: 'nope' is not a declared column"),
        ({"trim": True, "strip": True}, "remediation.strip"),
        ({"clip_numeric": "sometimes"}, "remediation.clip_numeric"),
    ],
)


def test_bad_remediation_config_fails_at_load(tmp_path, remediation, message):
    doc = {"sources": {"products": {"kind": "csv", "path": "x.csv", "key": "id",
                                    "columns": PRODUCT_COLUMNS, "remediation": remediation}}}
    with pytest.raises(ConfigError, match=message):
        parse_project(doc, tmp_path / "jammi.yaml")


@pytest.mark.slow
def test_materialize_admits_clipped_rows_and_quarantines_the_rest(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "products.csv").write_text(
        "id,title,body,price\n"
        "1,Red running shoes,Light trail runners,59.5\n"
        "2,Espresso machine,Fifteen bar pump,-5\n"
        "3,  Cast iron skillet ,Pre-seasoned pan,free\n",
        encoding="utf-8",
    )
    src = {"kind": "csv", "path": "data/products.csv", "key": "id", "columns": PRODUCT_COLUMNS,
           "remediation": {"clip_numeric": True, "trim": True},
           "quality": {"schema_conformance": {"max_rate": 1.0}}}
    project = write_project(tmp_path, {"products": src})
    result = materialize(project)
    assert result.success
    valid = load_frame(project.artifact_dir, "validated_products")
    assert valid.set_index("id").loc[2, "price"] == 0.0
    assert sorted(valid["id"].tolist()) == [1, 2]
    quarantine = load_frame(project.artifact_dir, "quarantine_products")
    assert quarantine["id"].tolist() == ["3"] and quarantine["price"].tolist() == ["free"]
    assert quarantine["title"].tolist() == ["  Cast iron skillet "]  # as extracted, not trimmed
    assert "price" in quarantine[REASON_COLUMN].iloc[0]
    mat = next(e.step_materialization_data.materialization for e in result.get_asset_materialization_events()
               if e.asset_key.to_user_string() == "validated_products")
    assert mat.metadata["remediation/clip_numeric"].value == 1
    assert mat.metadata["remediation/trim"].value == 1
