"""The pure frame checks in jammi.quality.frame_checks: each fails on data built to
fail it, passes on clean data, survives an empty frame and odd values in text columns."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from jammi.quality import frame_checks as fc
from jammi.quality.outcome import MAX_EXAMPLES, CheckOutcome


def _sane(out: CheckOutcome, name: str, severity: str = "warn") -> CheckOutcome:
    assert out.name == name
    assert out.severity == severity
    assert isinstance(out.description, str) and out.description and "\n" not in out.description
    assert len(out.examples) <= MAX_EXAMPLES
    json.dumps(out.examples)
    json.dumps(out.details)
    if out.statistic is not None:
        assert math.isfinite(out.statistic)
    return out


# --------------------------------------------------------------------------- completeness


def test_completeness_fails_with_exact_rates():
    df = pd.DataFrame({"title": ["a", None, "  ", "d"], "body": ["x", "y", "z", "\t"],
                       "price": [0, 0.0, np.nan, 1]})
    out = _sane(fc.completeness(df, ["title", "body", "price"], 0.2, "error"), "completeness", "error")
    assert not out.passed
    assert out.statistic == 0.5
    assert out.threshold == 0.2
    assert out.details == {"title": 0.5, "body": 0.25, "price": 0.25}
    assert out.examples[0] == {"field": "title", "missing": 2, "rate": 0.5}
    assert "title" in out.description


def test_completeness_passes_clean_and_flags_absent_field():
    df = pd.DataFrame({"title": ["a", "b"], "n": [0, 0]})  # zeros are values, not blanks
    out = _sane(fc.completeness(df, ["title", "n"], 0.0, "warn"), "completeness")
    assert out.passed and out.statistic == 0.0 and out.examples == []
    absent = fc.completeness(df, ["title", "missing_col"], 0.5, "warn")
    assert not absent.passed and absent.details["missing_col"] == 1.0
    assert absent.examples[0]["absent"] is True


# --------------------------------------------------------------------------- duplicates


def test_exact_duplicates_fails_on_repeated_keys_and_normalised_text():
    df = pd.DataFrame({
        "id": [1, 1, 2, 3, 4, 5, 6, 7],
        "title": ["Hello  World", "dup key", "hello world", "ＨＥＬＬＯ\tworld ", "a", "b", "c", "d"],
        "body": ["same", "x", "SAME", "same", "p", "q", "r", "s"],
    })
    out = _sane(fc.exact_duplicates(df, "id", ["title", "body"], 0.1, "warn"), "exact_duplicates")
    assert not out.passed
    assert out.statistic == pytest.approx(3 / 8)  # row 1 (key 1 again), rows 2 and 3 (text of key 1)
    assert out.details["duplicate_keys"] == 1
    assert out.details["duplicate_key_rows"] == 1
    assert out.details["duplicate_text_groups"] == 1
    assert out.details["duplicate_text_rows"] == 2
    assert {"key": 1, "count": 2} in out.examples
    group = next(e for e in out.examples if "text" in e)
    assert group["keys"] == [1, 2, 3]
    assert group["text"].startswith("hello world")


def test_exact_duplicates_passes_clean_and_ignores_blank_text():
    df = pd.DataFrame({"id": ["a", "b", "c", "d"], "title": ["one", "", None, "  "]})
    out = _sane(fc.exact_duplicates(df, "id", ["title"], 0.0, "warn"), "exact_duplicates")
    assert out.passed and out.statistic == 0.0 and out.examples == []
    # same text under the same (repeated) key is a key duplicate only
    same = fc.exact_duplicates(pd.DataFrame({"id": [1, 1], "t": ["a", "a"]}), "id", ["t"], 0.0, "warn")
    assert same.statistic == 0.5
    assert same.details["duplicate_text_groups"] == 0 and same.details["duplicate_key_rows"] == 1


def test_exact_duplicates_text_columns_are_not_concatenated_ambiguously():
    df = pd.DataFrame({"id": [1, 2], "a": ["x y", "x"], "b": ["z", "y z"]})
    assert fc.exact_duplicates(df, "id", ["a", "b"], 0.0, "warn").statistic == 0.0


# --------------------------------------------------------------------------- outliers


def test_outliers_fails_on_a_numeric_outlier_with_exact_rate():
    df = pd.DataFrame({"id": [f"r{i}" for i in range(21)], "price": list(range(1, 21)) + [1000]})
    out = _sane(fc.outliers(df, "id", [], ["price"], 0.01, "error"), "outliers", "error")
    assert not out.passed
    assert out.statistic == pytest.approx(1 / 21)
    d = out.details["price"]
    assert d["median"] == 11.0 and d["mad"] == 5.0 and d["count"] == 1 and d["rule"] == "mad"
    assert d["bounds"] == pytest.approx([11 - 3.5 * 5 / 0.6745, 11 + 3.5 * 5 / 0.6745])
    assert out.examples == [{"key": "r20", "column": "price", "value": 1000}]


def test_outliers_passes_clean_data_and_flags_long_text():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"id": range(50), "price": rng.normal(100, 5, 50),
                       "title": [f"title {'word ' * (i % 7)}{i}" for i in range(50)]})
    out = _sane(fc.outliers(df, "id", ["title"], ["price"], 0.0, "warn"), "outliers")
    assert out.passed and out.statistic == 0.0 and out.examples == []
    assert set(out.details) >= {"len(title)", "price"}
    df.loc[7, "title"] = "x" * 5000
    bad = fc.outliers(df, "id", ["title"], ["price"], 0.0, "warn")
    assert not bad.passed and bad.statistic == pytest.approx(1 / 50)
    assert bad.examples == [{"key": 7, "column": "len(title)", "value": 5000}]
    joined = fc.outliers(df, "id", ["title"], [], 0.0, "warn", text_length="joined")
    assert "len(title)" in joined.details and joined.statistic == pytest.approx(1 / 50)


def test_outliers_mad_catches_what_a_giant_row_hides_from_a_zscore():
    normal = [10, 11, 9, 10, 12, 8, 10, 11, 9, 10, 10, 11, 9, 12, 8, 10, 11, 9, 10, 10]
    values = normal + [30, 35, 1_000_000]
    df = pd.DataFrame({"id": range(len(values)), "v": values})
    arr = np.asarray(values, dtype=float)
    z = (arr - arr.mean()) / arr.std()
    assert list(np.flatnonzero(np.abs(z) > 3)) == [22]  # the giant masks 30 and 35
    out = fc.outliers(df, "id", [], ["v"], 0.0, "warn")
    assert sorted(e["key"] for e in out.examples) == [20, 21, 22]
    assert out.statistic == pytest.approx(3 / 23)
    assert out.examples[0]["key"] == 22  # most extreme first


def test_outliers_falls_back_to_iqr_when_mad_is_zero():
    values = [5] * 8 + [1, 2, 3, 8, 9, 10, 100]
    df = pd.DataFrame({"v": values})
    out = fc.outliers(df, None, [], ["v"], 0.0, "warn")
    d = out.details["v"]
    assert d["mad"] == 0.0 and d["rule"] == "iqr"
    assert d["bounds"] == pytest.approx([5 - 3 * 1.5, 6.5 + 3 * 1.5])
    assert out.examples == [{"key": 14, "column": "v", "value": 100}]  # key falls back to the index


def test_outliers_rule_options():
    df = pd.DataFrame({"id": range(21), "v": list(range(1, 21)) + [1000]})
    forced = fc.outliers(df, "id", [], ["v"], 0.0, "warn", rule="iqr")
    assert forced.details["v"]["rule"] == "iqr" and forced.statistic == pytest.approx(1 / 21)
    with pytest.raises(ValueError):
        fc.outliers(df, "id", [], ["v"], 0.0, "warn", rule="zscore")
    with pytest.raises(KeyError):
        fc.outliers(df, "nope", [], ["v"], 0.0, "warn")


# --------------------------------------------------------------------------- schema conformance

REASONS = [
    "price: greater_than_or_equal_to(0.0) failed for value '-3'; "
    "updated_at: coerce_dtype('datetime64[ns]') failed for value 'x'",
    "price: greater_than_or_equal_to(0.0) failed for value '-1'",
    "title: str_length(None, 10) failed for value 'a; b: c and more text'",
]


def test_schema_conformance_fails_and_counts_column_checks():
    q = pd.DataFrame({"id": [1, 2, 3], "_quarantine_reason": REASONS})
    out = _sane(fc.schema_conformance(q, 10, 0.1, "error"), "schema_conformance", "error")
    assert not out.passed
    assert out.statistic == pytest.approx(0.3)
    assert out.details["by_column_check"] == {
        "price: greater_than_or_equal_to(0.0)": 2,
        "updated_at: coerce_dtype('datetime64[ns]')": 1,
        "title: str_length(None, 10)": 1,
    }
    assert out.details["by_column"] == {"price": 2, "updated_at": 1, "title": 1}
    assert out.examples[0] == {"column_check": "price: greater_than_or_equal_to(0.0)", "count": 2,
                               "example_value": "'-3'"}


def test_schema_conformance_passes_without_quarantine():
    empty_q = pd.DataFrame({"id": [], "_quarantine_reason": []})
    out = _sane(fc.schema_conformance(empty_q, 10, 0.0, "warn"), "schema_conformance")
    assert out.passed and out.statistic == 0.0 and out.details["by_column_check"] == {}
    assert fc.schema_conformance(None, 5, 0.0, "warn").passed


def test_schema_conformance_reads_real_pandera_reasons():
    from jammi.silver.pandera_model import build_model, split_valid
    from jammi.spec.project import ColumnSpec, SourceSpec

    spec = SourceSpec(kind="csv", key="id", path="x.csv", columns={
        "id": ColumnSpec(type="int", nullable=False),
        "price": ColumnSpec(type="float", ge=0.0),
    })
    frame = pd.DataFrame({"id": ["1", "2", "3", "4"], "price": ["1.5", "-3", "2", "-1"]})
    valid, quarantine = split_valid(frame, build_model("items", spec))
    out = fc.schema_conformance(quarantine, len(frame), 0.0, "warn")
    assert out.statistic == 0.5 and not out.passed
    assert all(k.startswith("price: ") for k in out.details["by_column_check"])
    assert sum(out.details["by_column_check"].values()) == 2


def test_parse_reasons_handles_junk():
    assert fc.parse_reasons(None) == [("<unknown>", "<no reason>", "")]
    assert fc.parse_reasons("something odd")[0][0] == "<unparsed>"
    assert fc.parse_reasons(REASONS[0]) == [
        ("price", "greater_than_or_equal_to(0.0)", "'-3'"),
        ("updated_at", "coerce_dtype('datetime64[ns]')", "'x'"),
    ]


# --------------------------------------------------------------------------- referential integrity


def test_referential_integrity_fails_on_orphans_comparing_as_strings():
    df = pd.DataFrame({"order": ["o1", "o2", "o3", "o4", "o5", "o6"],
                       "customer": [5, "5", 7, None, 9.0, "x"]})
    parents = pd.Series(["5", 9, 1])
    out = _sane(fc.referential_integrity(df, "customer", parents, "customers", 0, "error", key="order"),
                "referential_integrity", "error")
    assert not out.passed
    assert out.statistic == 2.0
    assert out.details["column"] == "customer" and out.details["parent"] == "customers"
    assert out.details["checked"] == 5
    assert out.examples == [{"key": "o3", "value": 7}, {"key": "o6", "value": "x"}]
    nokey = fc.referential_integrity(df, "customer", parents, "customers", 2, "warn")
    assert nokey.passed and nokey.examples == [7, "x"]


def test_referential_integrity_passes_clean_with_nullable_ints():
    df = pd.DataFrame({"customer": pd.array([1, None, 2, 2], dtype="Int64")})
    out = _sane(fc.referential_integrity(df, "customer", pd.Series([1, 2, 3]), "customers", 0, "warn"),
                "referential_integrity")
    assert out.passed and out.statistic == 0.0 and out.examples == []


# --------------------------------------------------------------------------- distribution drift


def _frames(shift: float, seed: int = 1):
    rng = np.random.default_rng(seed)
    prev = pd.DataFrame({"price": rng.normal(0, 1, 2000),
                         "title": ["x" * int(n) for n in rng.integers(10, 30, 2000)],
                         "cat": rng.choice(["a", "b", "c"], 2000)})
    rng2 = np.random.default_rng(seed + 1)
    cur = pd.DataFrame({"price": rng2.normal(shift, 1, 2000),
                        "title": ["x" * int(n) for n in rng2.integers(10, 30, 2000)],
                        "cat": rng2.choice(["a", "b", "c"], 2000)})
    return cur, prev


def test_distribution_drift_passes_on_same_distribution():
    cur, prev = _frames(0.0)
    out = _sane(fc.distribution_drift(cur, prev, ["price"], ["title"], ["cat"], 0.1, 0.2, "warn"),
                "distribution_drift")
    assert out.passed and out.examples == []
    assert set(out.details) == {"price", "len(title)", "cat"}
    assert out.details["price"]["kind"] == "numeric"
    assert out.details["len(title)"]["kind"] == "text_length"
    assert out.details["cat"]["kind"] == "categorical" and out.details["cat"]["ks"] is None
    assert out.statistic == max(d["psi"] for d in out.details.values()) < 0.05


def test_distribution_drift_fails_on_shifted_and_new_categories():
    cur, prev = _frames(1.0)
    cur["cat"] = ["d"] * len(cur)  # a category never seen before
    out = _sane(fc.distribution_drift(cur, prev, ["price"], ["title"], ["cat"], 0.1, 0.2, "error"),
                "distribution_drift", "error")
    assert not out.passed
    assert {e["field"] for e in out.examples} == {"price", "cat"}
    assert out.details["price"]["ks"] > 0.3 and out.details["price"]["psi"] > 0.2
    assert out.statistic == out.details["cat"]["psi"] > 5


def test_psi_values():
    assert fc.categorical_psi(list("aaab"), list("aabb")) == pytest.approx(0.25 * math.log(3))
    assert fc.categorical_psi(list("ab"), list("ab")) == 0.0
    # a constant previous column still separates values beyond it
    assert fc.numeric_psi(np.full(10, 5.0), np.zeros(10)) > 10
    assert fc.numeric_psi(np.zeros(10), np.zeros(10)) == 0.0


def test_distribution_drift_without_previous():
    cur, _ = _frames(0.0)
    for prev in (None, cur.iloc[0:0]):
        out = _sane(fc.distribution_drift(cur, prev, ["price"], [], [], 0.1, 0.2, "warn"),
                    "distribution_drift")
        assert out.passed and out.statistic == 0.0
        assert out.description == "no previous materialization to compare"


# --------------------------------------------------------------------------- empty frames, odd values

EMPTY = pd.DataFrame({"id": pd.Series([], dtype=object), "title": pd.Series([], dtype=object),
                      "price": pd.Series([], dtype=float), "customer": pd.Series([], dtype=object)})


@pytest.mark.parametrize("run", [
    lambda: fc.completeness(EMPTY, ["title", "price"], 0.0, "warn"),
    lambda: fc.exact_duplicates(EMPTY, "id", ["title"], 0.0, "warn"),
    lambda: fc.outliers(EMPTY, "id", ["title"], ["price"], 0.0, "warn"),
    lambda: fc.schema_conformance(pd.DataFrame({"_quarantine_reason": []}), 0, 0.0, "warn"),
    lambda: fc.referential_integrity(EMPTY, "customer", pd.Series([1]), "customers", 0, "warn"),
    lambda: fc.distribution_drift(EMPTY, pd.DataFrame({"price": [1.0]}), ["price"], ["title"], [],
                                  0.1, 0.2, "warn"),
], ids=["completeness", "exact_duplicates", "outliers", "schema_conformance", "referential_integrity",
        "distribution_drift"])


def test_empty_frame_passes_explicitly(run):
    out = run()
    assert out.passed and out.statistic == 0.0 and out.examples == []
    assert "empty" in out.description
    json.dumps(out.details)


def test_non_text_values_in_text_columns_do_not_crash():
    odd = [123, 4.5, b"bytes", ["a", "list"], {"k": 1}, None, float("nan"), True, pd.Timestamp("2024-01-01"),
           "plain text"]
    df = pd.DataFrame({"id": range(len(odd)), "title": pd.Series(odd, dtype=object),
                       "price": pd.Series(odd, dtype=object)})
    outs = [
        fc.completeness(df, ["title"], 0.5, "warn"),
        fc.exact_duplicates(df, "id", ["title"], 0.5, "warn"),
        fc.outliers(df, "id", ["title"], ["price"], 0.5, "warn"),
        fc.outliers(df, "id", ["title"], [], 0.5, "warn", text_length="joined"),
        fc.referential_integrity(df, "title", pd.Series(["123", "plain text"]), "p", 100, "warn", key="id"),
        fc.distribution_drift(df, df.iloc[::-1], ["price"], ["title"], ["title"], 0.1, 0.2, "warn"),
        fc.schema_conformance(pd.DataFrame({"_quarantine_reason": odd}), 20, 1.0, "warn"),
    ]
    for out in outs:
        json.dumps(out.examples)
        json.dumps(out.details)
    assert outs[0].statistic == pytest.approx(0.2)  # None and NaN only
    assert outs[4].statistic == 6.0  # 10 values, 2 null, "123" and "plain text" found
    assert outs[5].passed  # same frame reversed: no drift
