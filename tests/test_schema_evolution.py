"""Versioned source schemas: load-time checks, version inference, migration steps, path
finding (with a property test of v1->v2->v3 == v1->v3) and lazy migration in validation."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jammi.demo.versioned import PARTNERS_SOURCE, write_partner_files
from jammi.errors import ConfigError, SchemaMigrationError
from jammi.silver.migrate import to_current_version
from jammi.silver.migrations import migrate_frame
from jammi.silver.pandera_model import REASON_COLUMN
from jammi.silver.version_models import version_model, version_models
from jammi.silver.versions import infer_version, resolve_versions
from jammi.spec.project import parse_project
from jammi.spec.schema import MigrationSpec, migration_path
from jammi.spec.steps import apply_to_frame
from jammi.tables.frames import load_frame
from tests.conftest import materialize, write_project

REQ = {"type": "str", "nullable": False}
V1 = {"sku": REQ, "name": REQ, "price": "str", "full_name": "str", "legacy": "str"}
V2 = {"sku": REQ, "title": REQ, "price": "float", "currency": REQ, "first": "str", "last": "str"}
V3 = {"sku": REQ, "title": REQ, "price": "float", "currency": REQ, "display": "str"}
V1_TO_V2 = [
    {"rename": {"from": "name", "to": "title"}},
    {"cast": {"column": "price", "to": "float"}},
    {"add": {"column": "currency", "default": "USD"}},
    {"split": {"column": "full_name", "into": ["first", "last"], "sep": " "}},
    {"drop": {"column": "legacy"}},
]
V2_TO_V3 = [{"merge": {"columns": ["first", "last"], "into": "display", "sep": " "}}]
V1_TO_V3 = [
    {"rename": {"from": "name", "to": "title"}},
    {"cast": {"column": "price", "to": "float"}},
    {"add": {"column": "currency", "default": "USD"}},
    {"rename": {"from": "full_name", "to": "display"}},
    {"drop": {"column": "legacy"}},
]


def source(current: dict = V2, versions: dict | None = None, migrations: list | None = None,
           version_column: str | None = None, current_name: str = "v2") -> dict:
    columns = dict(current)
    versions, migrations = copy.deepcopy(versions), copy.deepcopy(migrations)
    schema: dict = {"current": current_name,
                    "versions": versions if versions is not None else {
                        "v1": {"columns": V1, "deprecated": ["legacy"]}},
                    "migrations": migrations if migrations is not None else [
                        {"from": "v1", "to": "v2", "steps": copy.deepcopy(V1_TO_V2)}]}
    if version_column:
        columns[version_column] = "str"
        schema["version_column"] = version_column
    return {"kind": "jsonl", "path": "data/*.jsonl", "key": "sku", "columns": columns, "schema": schema}


def three_versions(direct: bool = True) -> dict:
    migrations = [{"from": "v1", "to": "v2", "steps": V1_TO_V2},
                  {"from": "v2", "to": "v3", "steps": V2_TO_V3}]
    if direct:
        migrations.append({"from": "v1", "to": "v3", "steps": V1_TO_V3})
    return source(V3, {"v1": {"columns": V1, "deprecated": ["legacy"]}, "v2": {"columns": V2}},
                  migrations, current_name="v3")


def load(src: dict, tmp_path: Path = Path("/tmp/jammi-schema-test")):
    return parse_project({"sources": {"partners": src}}, tmp_path / "jammi.yaml").sources["partners"]


def load_error(src: dict) -> str:
    with pytest.raises(ConfigError) as info:
        load(src)
    return str(info.value)


# --- load ------------------------------------------------------------------------------


def test_schema_block_loads_with_every_step_kind():
    spec = load(source())
    assert spec.schema_.current == "v2"
    assert spec.schema_.names == ["v1", "v2"]
    assert list(spec.schema_.versions["v1"].columns) == list(V1)
    assert spec.schema_.versions["v1"].columns["price"].type == "str"
    steps = spec.schema_.migrations[0].steps
    assert [next(iter(type(s).model_fields)) for s in steps] == ["rename", "cast", "add", "split", "drop"]
    assert steps[0].rename.from_ == "name" and steps[3].split.into == ["first", "last"]


def _without(steps: list, kind: str) -> list:
    return [s for s in steps if kind not in s]


@pytest.mark.parametrize("mutate, expected", [
    (lambda s: s["schema"]["migrations"][0]["steps"].insert(0, {"rename": {"from": "nme", "to": "x"}}),
     "sources.partners: schema.migrations[0] (v1->v2).steps[0].rename: unknown column 'nme' "
     "(columns of v1 at this step: sku, name, price, full_name, legacy)"),
    (lambda s: s["schema"]["migrations"][0].update({"from": "v0"}),
     "schema.migrations[0].from: unknown schema version 'v0' (declared: v1, v2)"),
    (lambda s: s["schema"]["migrations"][0]["steps"].append({"cast": {"column": "colour", "to": "int"}}),
     "steps[5].cast: unknown column 'colour'"),
    (lambda s: s["schema"]["migrations"][0]["steps"].insert(0, {"drop": {"column": "full_name"}}),
     "steps[0].drop: 'full_name' is not declared deprecated in v1"),
    (lambda s: s["schema"]["migrations"][0]["steps"].append({"rename": {"from": "sku", "to": "id"}}),
     "'sku' is the key column"),
    (lambda s: s["schema"]["migrations"][0]["steps"].append({"rename": {"to": "x"}, "drop": {"column": "y"}}),
     "a step is a mapping with exactly one of rename, add, cast, split, merge, drop"),
    (lambda s: s["schema"]["migrations"][0]["steps"].__setitem__(
        3, {"split": {"column": "full_name", "into": ["first", "last"], "regex": r"(\w+)"}}),
     "has 1 group(s) but 'into' names 2 column(s)"),
    (lambda s: s["schema"]["migrations"][0]["steps"].__setitem__(
        1, {"add": {"column": "bogus", "default": 1}}) or s["columns"].update({"bogus": "int"}),
     "field 'price' changes type str -> float"),
    (lambda s: s["schema"]["migrations"][0]["steps"].__setitem__(2, {"add": {"column": "currency",
                                                                            "default": [1]}}),
     "default [1] is not a str"),
    (lambda s: s["schema"].update({"version_column": "schema_version"}),
     "schema.version_column: 'schema_version' is not a declared column"),
    (lambda s: s["schema"]["versions"]["v1"]["columns"].pop("sku"),
     "schema.versions.v1.columns: the key 'sku' must be a column of every version"),
    (lambda s: s["schema"]["versions"].update({"v2": {"columns": V2}}),
     "'v2' is the current version"),
    (lambda s: s["schema"]["versions"]["v1"].update({"deprecated": ["fax"]}),
     "deprecated: 'fax' is not a column of this version"),
])


def test_bad_schema_blocks_fail_at_load_naming_the_field(mutate, expected):
    src = copy.deepcopy(source())
    mutate(src)
    assert expected in load_error(src)


def test_breaking_change_without_a_migration_step_names_field_types_and_fix():
    src = source(migrations=[{"from": "v1", "to": "v2", "steps": _without(V1_TO_V2, "cast")}])
    message = load_error(src)
    assert ("sources.partners: schema.migrations[0] (v1->v2): field 'price' changes type str -> float, which "
            "v2 cannot read from v1 data; add `cast: {column: price, to: float}` to migrations v1->v2"
            in message)


def test_required_field_without_a_value_suggests_add_or_rename():
    steps = _without(V1_TO_V2, "rename")
    message = load_error(source(migrations=[{"from": "v1", "to": "v2", "steps": steps}]))
    assert "field 'title' (str, required) is in v2 but migrated v1 rows lack it" in message
    assert "add `add: {column: title, default: <str value>}` to migrations v1->v2" in message
    assert "`rename: {from: name, to: title}`" in message


def test_column_left_over_by_a_migration_must_be_dropped_as_deprecated():
    message = load_error(source(migrations=[{"from": "v1", "to": "v2", "steps": _without(V1_TO_V2, "drop")}]))
    assert "field 'legacy' (str) of v1 is not in v2 and no step removes it" in message
    assert "add `drop: {column: legacy}` to migrations v1->v2" in message


def test_cyclic_migrations_fail_at_load():
    src = three_versions(direct=False)
    src["schema"]["migrations"].append({"from": "v2", "to": "v1", "steps": []})
    assert "schema.migrations: the migrations form a cycle: v1 -> v2 -> v1" in load_error(src)


def test_migration_from_newer_to_older_fails_at_load():
    src = three_versions(direct=False)
    src["schema"]["migrations"] = [{"from": "v1", "to": "v3", "steps": V1_TO_V3},
                                   {"from": "v3", "to": "v2", "steps": []}]
    assert "schema.migrations[1]: v3->v2 leads from a newer to an older version" in load_error(src)


def test_gapped_chain_fails_at_load():
    src = three_versions(direct=False)
    src["schema"]["migrations"] = [{"from": "v2", "to": "v3", "steps": V2_TO_V3}]
    message = load_error(src)
    assert "schema.versions.v1: no chain of migrations leads from v1 to the current version v3" in message
    assert "(declared: v2->v3)" in message


def test_duplicate_migration_fails_at_load():
    src = source()
    src["schema"]["migrations"].append(copy.deepcopy(src["schema"]["migrations"][0]))
    assert "schema.migrations[1]: a second migration v1->v2" in load_error(src)


# --- version inference -----------------------------------------------------------------


OPTIONAL_ADDED = source(
    {"sku": REQ, "name": REQ, "price": "str", "colour": "str"},
    {"v1": {"columns": {"sku": REQ, "name": REQ, "price": "str"}}},
    [{"from": "v1", "to": "v2", "steps": []}],
)


def test_inference_picks_the_newest_fitting_version_for_ambiguous_records():
    spec = load(OPTIONAL_ADDED)
    # {sku, name, price} fits v1 and v2 (colour is optional): ambiguous, the newest wins
    assert infer_version({"sku", "name", "price"}, spec) == ("v2", "")
    assert infer_version({"sku", "name", "colour"}, spec) == ("v2", "")
    frame = pd.DataFrame({"sku": ["a", "b"], "name": ["x", "y"], "price": ["1", None],
                          "colour": [None, "red"]})
    resolution = resolve_versions(frame, spec)
    assert resolution.versions.tolist() == ["v2", "v2"]
    assert resolution.ambiguous == 1 and resolution.inferred == 2 and resolution.reasons == {}


def test_inference_picks_the_only_fitting_version_and_explains_records_that_fit_none():
    spec = load(source())
    assert infer_version({"sku", "name", "full_name", "legacy"}, spec) == ("v1", "")
    assert infer_version({"sku", "title", "currency", "first"}, spec) == ("v2", "")
    version, reason = infer_version({"sku", "name", "currency"}, spec)
    assert version is None
    assert reason == ("no schema version fits the fields {currency, name, sku} (v1: unknown field(s) "
                      "currency; v2: missing required field(s) title and unknown field(s) name)")


def test_version_tag_wins_and_unknown_tags_are_reasons_naming_the_value():
    spec = load(source(version_column="schema_version"))
    frame = pd.DataFrame([
        {"sku": "a", "name": "Old", "schema_version": "v1"},
        {"sku": "b", "title": "New", "currency": "EUR", "schema_version": "v2"},
        {"sku": "c", "name": "Old", "schema_version": "v7"},
        {"sku": "d", "title": "New", "currency": "EUR", "schema_version": "v1"},
        {"sku": "e", "name": "Untagged", "schema_version": None},
    ])
    resolution = resolve_versions(frame, spec)
    assert resolution.versions.tolist() == ["v1", "v2", None, None, "v1"]
    assert resolution.reasons[2] == "schema_version: unknown schema version 'v7' (declared: v1, v2)"
    assert "tagged 'v1' but has field(s) 'v1' does not declare: currency, title" in resolution.reasons[3]
    assert (resolution.tagged, resolution.inferred) == (2, 1)


# --- steps -----------------------------------------------------------------------------


def run_steps(frame: pd.DataFrame, *steps: dict) -> tuple[pd.DataFrame, dict]:
    migration = MigrationSpec.model_validate({"from": "a", "to": "b", "steps": list(steps)})
    return apply_to_frame(frame, migration)


def test_rename_step_moves_values_to_the_new_name():
    out, failed = run_steps(pd.DataFrame({"k": [1, 2], "name": ["x", None]}),
                            {"rename": {"from": "name", "to": "title"}})
    assert list(out.columns) == ["k", "title"] and out["title"].tolist() == ["x", None] and failed == {}


def test_add_step_fills_the_default_or_null():
    out, _ = run_steps(pd.DataFrame({"k": [1, 2]}), {"add": {"column": "currency", "default": "USD"}},
                       {"add": {"column": "note"}})
    assert out["currency"].tolist() == ["USD", "USD"] and out["note"].tolist() == [None, None]


def test_cast_step_converts_values_and_leaves_unconvertible_ones_for_validation():
    frame = pd.DataFrame({"price": ["12.5", " 3 ", "forty", None], "qty": ["2", "2.0", "2.5", "x"],
                          "ok": ["yes", "False", "0", "maybe"], "code": [7, 7.0, True, None]})
    out, failed = run_steps(frame, {"cast": {"column": "price", "to": "float"}},
                            {"cast": {"column": "qty", "to": "int"}},
                            {"cast": {"column": "ok", "to": "bool"}},
                            {"cast": {"column": "code", "to": "str"}})
    assert out["price"].tolist() == [12.5, 3.0, "forty", None]
    assert out["qty"].tolist() == [2, 2, "2.5", "x"]
    assert out["ok"].tolist() == [True, False, False, "maybe"]
    assert out["code"].tolist() == ["7", "7", "true", None]
    assert failed == {}


def test_split_step_by_separator_keeps_the_rest_in_the_last_part():
    frame = pd.DataFrame({"full": ["Ana Maria Silva", "Li", None]})
    out, failed = run_steps(frame, {"split": {"column": "full", "into": ["first", "last"], "sep": " "}})
    assert list(out.columns) == ["first", "last"]
    assert out["first"].tolist() == ["Ana", "Li", None]
    assert out["last"].tolist() == ["Maria Silva", None, None]
    assert failed == {}


def test_split_step_by_regex_fails_rows_it_does_not_match():
    frame = pd.DataFrame({"dims": ["10x20", "7 x 3", "square"]}, index=[5, 6, 7])
    step = {"split": {"column": "dims", "into": ["w", "h"], "regex": r"(\d+)\s*x\s*(\d+)"}}
    out, failed = run_steps(frame, step)
    assert out.loc[[5, 6], "w"].tolist() == ["10", "7"] and out.loc[[5, 6], "h"].tolist() == ["20", "3"]
    assert failed == {7: "migration a->b: split of dims: value 'square' does not match regex "
                         "'(\\\\d+)\\\\s*x\\\\s*(\\\\d+)'"}


def test_merge_step_joins_non_null_values():
    frame = pd.DataFrame({"street": ["1 Main St", None, None], "city": ["Oslo", "Bergen", None]})
    out, _ = run_steps(frame, {"merge": {"columns": ["street", "city"], "into": "address", "sep": ", "}})
    assert list(out.columns) == ["address"]
    assert out["address"].tolist() == ["1 Main St, Oslo", "Bergen", None]


def test_drop_step_removes_the_deprecated_column():
    out, _ = run_steps(pd.DataFrame({"k": [1], "fax": ["555"]}), {"drop": {"column": "fax"}})
    assert list(out.columns) == ["k"]


# --- paths and migrate_frame -----------------------------------------------------------


def test_path_finding_prefers_the_declared_direct_migration():
    spec = load(three_versions(direct=True))
    assert [m.label for m in migration_path(spec.schema_, "v1", "v3")] == ["v1->v3"]
    chained = load(three_versions(direct=False))
    assert [m.label for m in migration_path(chained.schema_, "v1", "v3")] == ["v1->v2", "v2->v3"]
    assert migration_path(spec.schema_, "v3", "v1") is None


def test_migrate_frame_turns_v1_rows_into_current_rows():
    spec = load(source())
    frame = pd.DataFrame([{"sku": "a", "name": "Lamp", "price": "9.5", "full_name": "Ana Silva",
                           "legacy": "x"}])
    out = migrate_frame(frame, spec, "v1")
    assert list(out.columns) == list(V2)
    assert out.iloc[0].tolist() == ["a", "Lamp", 9.5, "USD", "Ana", "Silva"]


def test_migrate_frame_refuses_to_lose_rows():
    src = source()
    src["schema"]["migrations"][0]["steps"][3] = {"split": {"column": "full_name", "into": ["first", "last"],
                                                            "regex": r"^(\w+) (\w+)$"}}
    frame = pd.DataFrame([{"sku": "a", "name": "Lamp", "full_name": "Cher"}])
    with pytest.raises(SchemaMigrationError, match="1 row\\(s\\) could not be migrated: row 0: .*'Cher'"):
        migrate_frame(frame, load(src), "v1")
    with pytest.raises(SchemaMigrationError, match="unknown schema version 'v9'"):
        migrate_frame(frame, load(src), "v9")


_TEXT = st.text(alphabet="ab xy.1", max_size=8)
_ROWS = st.lists(
    st.fixed_dictionaries({
        "name": st.text(alphabet="abc ", min_size=1, max_size=6),
        "price": st.one_of(st.none(), _TEXT, st.floats(0, 1e6).map(str)),
        "full_name": st.one_of(st.none(), _TEXT),
        "legacy": st.one_of(st.none(), _TEXT),
    }),
    max_size=12,
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_ROWS)
def test_property_v1_to_v2_to_v3_equals_v1_to_v3(rows):
    spec = load(three_versions(direct=True))
    frame = pd.DataFrame([{"sku": f"k{i}", **r} for i, r in enumerate(rows)],
                         columns=["sku", "name", "price", "full_name", "legacy"])
    chained = migrate_frame(migrate_frame(frame, spec, "v1", "v2"), spec, "v2", "v3")
    direct = migrate_frame(frame, spec, "v1", "v3")
    assert [m.label for m in migration_path(spec.schema_, "v1", "v3")] == ["v1->v3"]
    assert list(direct.columns) == list(V3)
    pd.testing.assert_frame_equal(chained, direct, check_dtype=False)


# --- lazy migration in validation ------------------------------------------------------


def test_to_current_version_migrates_older_rows_and_keeps_the_raw_index():
    spec = load(source(version_column="schema_version"))
    raw = pd.DataFrame([
        {"sku": "a", "name": "Old", "price": "12.5", "full_name": "Ana Silva", "legacy": "x"},
        {"sku": "b", "title": "New", "price": 3.0, "currency": "EUR", "schema_version": "v2"},
        {"sku": "c", "name": "Gone", "schema_version": "v9"},
    ])
    current = to_current_version(raw, spec)
    assert current.frame.index.tolist() == [0, 1]
    assert current.frame.loc[0, ["title", "price", "currency", "first", "schema_version"]].tolist() == [
        "Old", 12.5, "USD", "Ana", "v2"]
    assert current.unresolved["sku"].tolist() == ["c"]
    assert current.metadata() == {"schema/rows_v1": 1, "schema/rows_v2": 1, "schema/rows_migrated": 1,
                                  "schema/rows_ambiguous": 0, "schema/rows_unresolved": 1}


def test_each_version_is_a_pandera_model_of_its_own_columns():
    spec = load(three_versions())
    models = version_models("partners", spec)
    assert list(models) == ["v1", "v2", "v3"]
    assert models["v1"].__name__ == "PartnersV1Frame" and models["v3"].__name__ == "PartnersFrame"
    assert set(models["v1"].to_schema().columns) == set(V1)
    assert set(models["v2"].to_schema().columns) == set(V2)
    assert models["v2"].to_schema().columns["price"].dtype.type.name == "Float64"
    assert not models["v1"].to_schema().columns["name"].nullable
    models["v2"].validate(pd.DataFrame({"sku": ["a"], "title": ["t"], "price": ["1.5"], "currency": ["EUR"],
                                        "first": [None], "last": [None]}))


def test_a_source_without_versions_has_its_own_model_only():
    plain = load({"kind": "jsonl", "path": "data/*.jsonl", "key": "sku", "columns": {"sku": REQ}})
    assert version_model("partners", plain, "v1").__name__ == "PartnersFrame"
    with pytest.raises(KeyError, match="declares no schema version 'v7'"):
        version_model("partners", load(source()), "v7")


def test_an_older_row_invalid_in_its_own_version_is_quarantined_naming_that_version():
    spec = load(source(version_column="schema_version"))
    raw = pd.DataFrame([
        {"sku": "a", "name": "Old", "price": "12.5", "schema_version": "v1"},
        {"sku": "b", "name": None, "price": "3", "schema_version": "v1"},  # v1 requires name
    ])
    current = to_current_version(raw, spec, "partners")
    assert current.frame["sku"].tolist() == ["a"]
    reason = current.unresolved.set_index("sku").loc["b", REASON_COLUMN]
    assert reason.startswith("schema v1: name:") and "not_nullable" in reason


@pytest.mark.slow
def test_validate_asset_migrates_lazily_and_quarantines_unresolved_rows(tmp_path):
    write_partner_files(tmp_path)
    project = write_project(tmp_path, {"partners": PARTNERS_SOURCE})
    result = materialize(project)
    assert result.success
    valid = load_frame(project.artifact_dir, "validated_partners").set_index("partner_sku")
    assert sorted(valid.index) == ["P-100", "P-101", "P-200", "P-201"]
    assert valid.loc["P-100", ["title", "price", "currency", "contact_first", "contact_last"]].tolist() == [
        "Trail running shoes", 59.5, "USD", "Ana", "Silva"]
    assert valid.loc["P-201", "currency"] == "GBP"
    assert set(valid["schema_version"]) == {"v2"} and "fax" not in valid.columns
    quarantine = load_frame(project.artifact_dir, "quarantine_partners").set_index("partner_sku")
    assert sorted(quarantine.index) == ["P-102", "P-202"]
    assert quarantine.loc["P-102", "price"] == "forty"  # as extracted
    assert "price" in quarantine.loc["P-102", REASON_COLUMN]
    assert quarantine.loc["P-202", REASON_COLUMN] == (
        "schema_version: unknown schema version 'v3' (declared: v1, v2)")
    mat = next(e.step_materialization_data.materialization for e in result.get_asset_materialization_events()
               if e.asset_key.to_user_string() == "validated_partners")
    assert mat.metadata["schema/rows_v1"].value == 3
    assert mat.metadata["schema/rows_v2"].value == 2
    assert mat.metadata["schema/rows_migrated"].value == 3
    assert mat.metadata["schema/rows_unresolved"].value == 1
    assert mat.metadata["rows_quarantined"].value == 2
