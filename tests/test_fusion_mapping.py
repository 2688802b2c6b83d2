"""Standardizing one source's validated frame into entity records: mapping expressions, casts,
observation times, record hashes, and the errors that name what to fix."""

from __future__ import annotations

import pandas as pd
import pytest

from jammi.errors import FusionError
from jammi.fusion.mapping import standardize
from jammi.spec.entities import EntitySpec


def entity(fields: dict, mapping: dict, **source) -> EntitySpec:
    return EntitySpec.model_validate({"fields": fields, "sources": {"src": {"mapping": mapping, **source}}})


def run(frame: pd.DataFrame, ent: EntitySpec, key: str = "k", **kwargs) -> pd.DataFrame:
    return standardize(frame, "src", ent.sources["src"], ent, key, **kwargs)


def test_columns_order_meta_and_unmapped_fields():
    ent = entity({"name": "str", "email": "str", "city": "str"}, {"email": "mail", "name": "nm"},
                 priority=3, quality=0.4, timestamp="ts")
    frame = pd.DataFrame({"k": ["a", "b"], "nm": ["Ann", "Bob"], "mail": ["a@x", "b@x"],
                          "ts": pd.to_datetime(["2024-01-01 10:00", "2024-02-01"], format="ISO8601")})
    out = run(frame, ent)
    assert list(out.columns) == ["_source", "_record_id", "_observed_at", "_priority", "_quality",
                                 "name", "email", "city", "_hash"]
    assert out["_source"].tolist() == ["src", "src"]
    assert out["_record_id"].tolist() == ["a", "b"]
    assert out["_priority"].tolist() == [3, 3] and out["_priority"].dtype == "int64"
    assert out["_quality"].tolist() == [0.4, 0.4]
    assert str(out["_observed_at"].dtype) == "datetime64[ns, UTC]"
    assert out["_observed_at"].tolist() == [pd.Timestamp("2024-01-01 10:00", tz="UTC"),
                                            pd.Timestamp("2024-02-01", tz="UTC")]
    assert out["name"].tolist() == ["Ann", "Bob"] and out["email"].tolist() == ["a@x", "b@x"]
    assert out["city"].isna().all()


def test_record_id_column_and_missing_timestamp():
    ent = entity({"name": "str"}, {"name": "nm"}, id="code")
    frame = pd.DataFrame({"k": ["a", "b"], "code": pd.array([7, 8], dtype="Int64"), "nm": ["x", "y"]})
    out = run(frame, ent)
    assert out["_record_id"].tolist() == ["7", "8"]
    assert out["_observed_at"].isna().all() and str(out["_observed_at"].dtype) == "datetime64[ns, UTC]"


def test_concat_joins_non_null_parts_with_sep():
    ent = entity({"name": "str"}, {"name": {"concat": ["first", "middle", "last"], "sep": "-"}})
    frame = pd.DataFrame({"k": list("abcd"), "first": ["Ann", None, "", "Cy"],
                          "middle": ["M", None, None, None], "last": ["Lee", None, "  ", "Park"]})
    assert run(frame, ent)["name"].tolist() == ["Ann-M-Lee", pd.NA, pd.NA, "Cy-Park"]


def test_regex_extracts_group_one_or_whole_match():
    ent = entity({"city": "str", "zip": "str"},
                 {"city": {"column": "addr", "regex": r",\s*([^,]+)$"},
                  "zip": {"column": "addr", "regex": r"\d{4}"}})
    frame = pd.DataFrame({"k": list("abc"), "addr": ["1 Main St, 0150 Oslo", "no comma here", None]})
    out = run(frame, ent)
    assert out["city"].tolist() == ["0150 Oslo", pd.NA, pd.NA]
    assert out["zip"].tolist() == ["0150", pd.NA, pd.NA]


def test_casts_to_field_type_and_explicit_cast():
    ent = entity(
        {"n": "int", "price": "float", "ok": "bool", "born": "date", "seen": "datetime", "code": "str"},
        {"n": "n", "price": "price", "ok": "ok", "born": "born", "seen": "seen",
         "code": {"column": "code", "cast": "int"}},
    )
    frame = pd.DataFrame({"k": ["a", "b"], "n": ["42", "7.0"], "price": ["3.5", None],
                          "ok": ["Yes", "false"], "born": ["2020-05-17 13:45", "2021-01-02"],
                          "seen": ["2024-01-01T12:00:00+02:00", "2024-03-04"], "code": ["0042", " "]})
    out = run(frame, ent)
    assert out["n"].dtype == "Int64" and out["n"].tolist() == [42, 7]
    assert out["price"].dtype == "Float64" and out["price"].tolist() == [3.5, pd.NA]
    assert out["ok"].dtype == "boolean" and out["ok"].tolist() == [True, False]
    assert out["born"].tolist() == [pd.Timestamp("2020-05-17"), pd.Timestamp("2021-01-02")]
    assert out["seen"].dtype == "datetime64[ns]"
    assert out["seen"].tolist() == [pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-03-04")]
    assert out["code"].tolist() == ["42", pd.NA]  # cast int drops the zeros, the field stays str


def test_empty_strings_become_null():
    ent = entity({"name": "str", "n": "int"}, {"name": "name", "n": "n"})
    frame = pd.DataFrame({"k": list("abc"), "name": ["", "   ", "x"], "n": ["", "1", " "]})
    out = run(frame, ent)
    assert out["name"].tolist() == [pd.NA, pd.NA, "x"]
    assert out["n"].tolist() == [pd.NA, 1, pd.NA]


def test_string_timestamps_parse_and_nulls_stay_nat():
    ent = entity({"name": "str"}, {"name": "name"}, timestamp="ts")
    frame = pd.DataFrame({"k": list("abc"), "name": list("xyz"),
                          "ts": ["2024-01-05T08:00:00Z", None, "5 March 2024"]})
    out = run(frame, ent)
    assert out["_observed_at"].tolist()[0] == pd.Timestamp("2024-01-05 08:00", tz="UTC")
    assert pd.isna(out["_observed_at"].iloc[1])
    assert out["_observed_at"].tolist()[2] == pd.Timestamp("2024-03-05", tz="UTC")


def test_hash_follows_values_and_observation_time():
    ent = entity({"name": "str", "n": "int"}, {"name": "name", "n": "n"}, timestamp="ts")
    frame = pd.DataFrame({"k": list("abcd"), "name": ["x", "x", "y", "x"], "n": [1, 1, 1, 1],
                          "ts": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-01", "2024-01-02"])})
    h = run(frame, ent)["_hash"].tolist()
    assert h[0] == h[1]  # same values, same time: same hash whatever the record id
    assert len({h[0], h[2], h[3]}) == 3
    assert all(len(x) == 32 and int(x, 16) >= 0 for x in h)
    assert run(frame, ent)["_hash"].tolist() == h


def test_unparseable_timestamp_names_entity_source_column_records_and_values():
    ent = entity({"name": "str"}, {"name": "name"}, timestamp="ts")
    frame = pd.DataFrame({"k": [f"r{i}" for i in range(8)], "name": list("abcdefgh"),
                          "ts": ["2024-01-01"] + [f"soon-{i}" for i in range(1, 8)]})
    with pytest.raises(FusionError) as err:
        run(frame, ent, entity_name="customer")
    msg = str(err.value)
    assert "'customer'" in msg and "'src'" in msg and "'ts'" in msg
    assert "'r1'" in msg and "'soon-1'" in msg and "'r5'" in msg and "'soon-5'" in msg
    assert "'r6'" not in msg and "7 value(s)" in msg and "and 2 more" in msg


def test_uncastable_value_names_source_field_record_and_value():
    ent = entity({"n": "int"}, {"n": "n"})
    frame = pd.DataFrame({"k": ["a", "b", "c"], "n": ["1", "two", "2.5"]})
    with pytest.raises(FusionError) as err:
        run(frame, ent)
    msg = str(err.value)
    assert "'src'" in msg and "'n'" in msg and "int" in msg
    assert "'b': 'two'" in msg and "'c': '2.5'" in msg and "'a'" not in msg


def test_uncastable_bool_and_date():
    ent = entity({"ok": "bool"}, {"ok": "ok"})
    with pytest.raises(FusionError, match="record 'b': 'maybe'"):
        run(pd.DataFrame({"k": ["a", "b"], "ok": ["yes", "maybe"]}), ent)
    ent = entity({"born": "date"}, {"born": "born"})
    with pytest.raises(FusionError, match="record 'a': 'not a date'"):
        run(pd.DataFrame({"k": ["a"], "born": ["not a date"]}), ent)


def test_null_record_id_is_refused():
    ent = entity({"name": "str"}, {"name": "name"}, id="code")
    with pytest.raises(FusionError, match="'code' is null"):
        run(pd.DataFrame({"k": ["a", "b"], "code": ["x", None], "name": ["p", "q"]}), ent)


def test_numbers_with_currency_and_thousands_separators():
    ent = entity({"price": "float", "n": "int"}, {"price": "price", "n": "n"})
    frame = pd.DataFrame({"k": list("abcde"),
                          "price": ["$1,999.00", "1,200 usd", "€5", "-3.25", "12,345,678.5"],
                          "n": ["1,000", "$2", "3", "4", "5"]})
    out = run(frame, ent)
    assert out["price"].tolist() == [1999.0, 1200.0, 5.0, -3.25, 12345678.5]
    assert out["n"].dtype == "Int64" and out["n"].tolist() == [1000, 2, 3, 4, 5]


def test_declared_locale_reads_decimal_comma_and_dot_groups():
    ent = entity({"price": "float"}, {"price": {"column": "price", "locale": "de_DE"}})
    frame = pd.DataFrame({"k": list("abcd"), "price": ["1.999,00 €", "1.999", "EUR 5,5", "12"]})
    assert run(frame, ent)["price"].tolist() == [1999.0, 1999.0, 5.5, 12.0]


def test_unknown_locale_is_refused_at_load():
    with pytest.raises(ValueError, match="locale 'xx_YY' is not a known locale"):
        entity({"price": "float"}, {"price": {"column": "price", "locale": "xx_YY"}})


def test_regex_with_several_groups_joins_them():
    ent = entity({"price": "float", "name": "str"},
                 {"price": {"column": "raw", "regex": r"(\d+)\s(\d{3})(\.\d+)?"},
                  "name": {"column": "who", "regex": r"(\w+), (\w+)(?: (\w+))?", "join": " "}})
    frame = pd.DataFrame({"k": list("ab"), "raw": ["1 999.50 kr", "2 000"],
                          "who": ["Smith, Ann", "Lee, Bo Jr"]})
    out = run(frame, ent)
    assert out["price"].tolist() == [1999.5, 2000.0]
    assert out["name"].tolist() == ["Smith Ann", "Lee Bo Jr"]


@pytest.mark.parametrize("values, mapping, fix", [
    (["19,99", "1.299,50 €"], {}, {"locale": "de_DE"}),
    (["about 5 dollars", "ca. 12.50"], {}, {"regex": r"([-+]?[0-9][0-9.,'\s]*)"}),
    (["circa 19,99"], {}, {"regex": r"([-+]?[0-9][0-9.,'\s]*)", "locale": "de_DE"}),
])
def test_unreadable_number_names_the_value_and_a_fix_that_works(values, mapping, fix):
    frame = pd.DataFrame({"k": [f"r{i}" for i in range(len(values))], "p": values})
    ent = entity({"p": "float"}, {"p": {"column": "p", "cast": "float", **mapping}})
    with pytest.raises(FusionError) as err:
        run(frame, ent)
    msg = str(err.value)
    assert f"record 'r0': {values[0]!r}" in msg and "'p'" in msg
    assert "set `cast`" not in msg  # the mapping casts already: that is not the fix
    for key, value in fix.items():
        assert f"`{key}: {value}" in msg or f"`{key}: {value!r}" in msg
    fixed = entity({"p": "float"}, {"p": {"column": "p", "cast": "float", **mapping, **fix}})
    assert run(frame, fixed)["p"].notna().all()  # the suggested change reads every value


def test_text_that_holds_no_number_says_so():
    ent = entity({"p": "float"}, {"p": "p"})
    with pytest.raises(FusionError, match="'r0': 'n/a'.*hold no number.*declare the field `str`"):
        run(pd.DataFrame({"k": ["r0"], "p": ["n/a"]}), ent)
