"""compare_schemas: Avro/Confluent compatibility levels per field, and after a migration."""

from __future__ import annotations

import pytest

from jammi.spec.compatibility import compare_schemas, meet
from jammi.spec.project import ColumnSpec
from jammi.spec.schema import MigrationSpec


def cols(**types: str) -> dict[str, ColumnSpec]:
    """`price="float"` is nullable, `price="float!"` required."""
    return {n: ColumnSpec(type=t.rstrip("!"), nullable=not t.endswith("!")) for n, t in types.items()}


@pytest.mark.parametrize("old, new, field, change, level", [
    (cols(k="str!"), cols(k="str!", note="str"), "note", "added", "full"),
    (cols(k="str!"), cols(k="str!", note="str!"), "note", "added", "forward"),
    (cols(k="str!", note="str"), cols(k="str!"), "note", "removed", "full"),
    (cols(k="str!", note="str!"), cols(k="str!"), "note", "removed", "backward"),
    (cols(k="str!", n="int"), cols(k="str!", n="int!"), "n", "nullability", "forward"),
    (cols(k="str!", n="int!"), cols(k="str!", n="int"), "n", "nullability", "backward"),
    (cols(k="str!", n="int"), cols(k="str!", n="float"), "n", "type", "backward"),
    (cols(k="str!", n="float"), cols(k="str!", n="int"), "n", "type", "forward"),
    (cols(k="str!", n="str"), cols(k="str!", n="float"), "n", "type", "breaking"),
    (cols(k="str!", n="int!"), cols(k="str!", n="float"), "n", "type+nullability", "backward"),
    (cols(k="str!", n="int"), cols(k="str!", n="float!"), "n", "type+nullability", "breaking"),
    (cols(k="str!", n="float!"), cols(k="str!", n="int"), "n", "type+nullability", "breaking"),
])


def test_each_kind_of_change_has_its_level(old, new, field, change, level):
    result = compare_schemas(old, new)
    got = result.field(field)
    assert (got.change, got.level) == (change, level)
    assert result.level == level  # the other fields are unchanged
    assert result.field("k").change == "unchanged"


def test_levels_meet_to_the_weakest():
    assert meet("full", "backward") == "backward"
    assert meet("backward", "forward") == "breaking"
    assert meet("forward", "forward") == "forward"
    assert meet("breaking", "full") == "breaking"
    # a removed required field (backward) and an added required one (forward): breaking overall
    result = compare_schemas(cols(k="str!", name="str!"), cols(k="str!", title="str!"))
    assert result.level == "breaking" and not result.backward and not result.forward


def test_reasons_and_fixes_name_field_types_and_step():
    result = compare_schemas(cols(k="str!", price="str", name="str!"),
                             cols(k="str!", price="float", title="str!"), label="v1->v2")
    assert result.reasons() == {
        "price": "type str -> float (neither side reads the other's values)",
        "title": "added required field (str) with no default: old data lacks it",
        "name": "removed required field (str): old readers need it",
    }
    assert result.field("price").fix == "add `cast: {column: price, to: float}` to migrations v1->v2"
    assert result.field("title").fix == (
        "add `add: {column: title, default: <str value>}` to migrations v1->v2 "
        "(or `rename: {from: name, to: title}`)")
    assert (result.field("price").old_type, result.field("price").new_type) == ("str", "float")


def test_a_migration_makes_the_change_fully_compatible_and_reasons_name_the_steps():
    migration = MigrationSpec.model_validate({"from": "v1", "to": "v2", "steps": [
        {"rename": {"from": "name", "to": "title"}}, {"cast": {"column": "price", "to": "float"}},
        {"add": {"column": "currency", "default": "USD"}},
        {"merge": {"columns": ["first", "last"], "into": "contact"}}, {"drop": {"column": "fax"}},
    ]})
    old = cols(k="str!", name="str!", price="str", first="str", last="str", fax="str")
    new = cols(k="str!", title="str!", price="float", currency="str!", contact="str")
    assert compare_schemas(old, new).level == "breaking"
    result = compare_schemas(old, new, migration, deprecated=["fax"])
    assert result.level == "full" and result.backward and result.forward
    assert result.reasons() == {
        "title": "renamed from name by migration v1->v2",
        "price": "cast from str by migration v1->v2",
        "currency": "added with default 'USD' by migration v1->v2",
        "contact": "merged from first, last by migration v1->v2",
    }


def test_a_partial_migration_still_reports_what_it_leaves_breaking():
    migration = MigrationSpec.model_validate({"from": "v1", "to": "v2", "steps": [
        {"rename": {"from": "name", "to": "title"}}]})
    result = compare_schemas(cols(k="str!", name="str!", price="str"),
                             cols(k="str!", title="str!", price="int"), migration)
    assert result.level == "breaking"
    assert result.field("title").change == "migrated"
    assert result.field("price").fix == "add `cast: {column: price, to: int}` to migrations v1->v2"
