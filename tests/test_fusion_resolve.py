"""Conflict resolution: each rule does what its name says, the provenance names the rule that
decided, and the vectorized resolver agrees with a record-by-record reference."""

from __future__ import annotations

import itertools
import random

import pandas as pd
import pytest

from jammi.fusion.mapping import standardize
from jammi.fusion.resolve import resolve
from jammi.spec.entities import EntitySpec

T = pd.Timestamp


def spec(fields: dict, resolution: dict, sources: tuple[str, ...] = ("a", "b", "c")) -> EntitySpec:
    first = next(iter(fields))
    return EntitySpec.model_validate({
        "fields": fields,
        "sources": {s: {"mapping": {first: first}} for s in sources},
        "resolution": resolution,
    })


def records(rows: list[dict], ent: EntitySpec) -> tuple[pd.DataFrame, pd.Series]:
    """Standardized records written by hand: source, id, priority, quality, at, entity, fields."""
    frame = pd.DataFrame({
        "_source": pd.array([r["source"] for r in rows], dtype="string"),
        "_record_id": pd.array([r["id"] for r in rows], dtype="string"),
        "_observed_at": pd.to_datetime([r.get("at") for r in rows], utc=True),
        "_priority": [r.get("priority", 1) for r in rows],
        "_quality": [float(r.get("quality", 1.0)) for r in rows],
    })
    dtypes = {"str": "string", "int": "Int64", "float": "Float64", "bool": "boolean",
              "datetime": "datetime64[ns]", "date": "datetime64[ns]"}
    for field, ftype in ent.fields.items():
        frame[field] = pd.Series([r.get(field) for r in rows], dtype=dtypes[ftype])
    return frame, pd.Series([r.get("entity", "e1") for r in rows])


def fuse(rows: list[dict], ent: EntitySpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    recs, ids = records(rows, ent)
    return resolve(recs, ids, ent, "eid")


def prov(provenance: pd.DataFrame, field: str, entity: str = "e1") -> pd.Series:
    hit = provenance[(provenance["eid"] == entity) & (provenance["field"] == field)]
    assert len(hit) == 1
    return hit.iloc[0]


CUSTOMER = EntitySpec.model_validate({
    "fields": {"name": "str", "email": "str", "phone": "str"},
    "sources": {
        "primary_db": {"priority": 1, "timestamp": "updated",
                       "mapping": {"name": "name", "email": "email"}},
        "user_input": {"priority": 2, "timestamp": "ts",
                       "mapping": {"name": "full_name", "email": "mail", "phone": "phone"}},
    },
    "resolution": {"email": ["most_recent"], "name": ["priority"]},
})


def test_chapter_example_email_most_recent_name_by_priority():
    primary = pd.DataFrame({"id": ["c1"], "name": ["John Doe"], "email": ["john@example.com"],
                            "updated": pd.to_datetime(["2024-01-01"])})
    user = pd.DataFrame({"uid": ["u9"], "full_name": ["Johnny"], "mail": ["john.doe@example.com"],
                         "phone": ["+1-555-0100"], "ts": pd.to_datetime(["2024-01-10"])})
    recs = pd.concat([
        standardize(primary, "primary_db", CUSTOMER.sources["primary_db"], CUSTOMER, "id"),
        standardize(user, "user_input", CUSTOMER.sources["user_input"], CUSTOMER, "uid"),
    ], ignore_index=True)
    fused, provenance = resolve(recs, pd.Series(["user_123", "user_123"]), CUSTOMER, "customer_id")

    row = fused.iloc[0]
    assert row["customer_id"] == "user_123"
    assert row["email"] == "john.doe@example.com"  # the chapter's claim, which its own code missed
    assert row["name"] == "John Doe"
    assert row["phone"] == "+1-555-0100"
    assert row["_sources"] == "primary_db,user_input" and row["_record_count"] == 2

    p = provenance.set_index("field")
    assert list(provenance["field"]) == ["email", "name", "phone"]
    assert (p.loc["email", "source"], p.loc["email", "record_id"], p.loc["email", "rule"]) == \
        ("user_input", "u9", "most_recent")
    assert p.loc["email", "observed_at"] == T("2024-01-10", tz="UTC")
    assert p.loc["email", "candidates"] == 2 and bool(p.loc["email", "conflict"])
    assert (p.loc["name", "source"], p.loc["name", "rule"], p.loc["name", "value"]) == \
        ("primary_db", "priority", "John Doe")
    assert (p.loc["phone", "source"], p.loc["phone", "rule"]) == ("user_input", "only_value")
    assert p.loc["phone", "candidates"] == 1 and not p.loc["phone", "conflict"]


@pytest.mark.parametrize("rule, rows, winner", [
    ("priority", [dict(source="a", id="1", priority=2, v="x"), dict(source="b", id="2", priority=1, v="y")],
     ("y", "b")),
    ("most_recent", [dict(source="a", id="1", at="2024-05-01", v="x"),
                     dict(source="b", id="2", at="2024-01-01", v="y"),
                     dict(source="c", id="3", at=None, v="z")], ("x", "a")),
    ("highest_quality", [dict(source="a", id="1", quality=0.4, v="x"),
                         dict(source="b", id="2", quality=0.8, v="y")], ("y", "b")),
    ("most_complete", [dict(source="a", id="1", v="x"),
                       dict(source="b", id="2", v="y", w="filled")], ("y", "b")),
    ("longest", [dict(source="a", id="1", v="Jon"), dict(source="b", id="2", v="Jonathan")],
     ("Jonathan", "b")),
    # two weaker sources that agree outweigh one strong source
    ("vote", [dict(source="a", id="1", quality=0.9, v="x"), dict(source="b", id="2", quality=0.5, v="y"),
              dict(source="c", id="3", quality=0.5, v="y")], ("y", "b")),
])


def test_each_rule_picks_its_best_candidate(rule, rows, winner):
    ent = spec({"v": "str", "w": "str"}, {"v": [rule]})
    fused, provenance = fuse(rows, ent)
    p = prov(provenance, "v")
    assert (fused.iloc[0]["v"], p["source"]) == winner
    assert p["rule"] == rule and bool(p["conflict"]) and p["candidates"] == len(rows)


def test_most_recent_treats_missing_time_as_oldest():
    ent = spec({"v": "str"}, {"v": ["most_recent"]})
    fused, provenance = fuse([dict(source="a", id="1", at=None, v="x"),
                              dict(source="b", id="2", at="1999-01-01", v="y")], ent)
    assert fused.iloc[0]["v"] == "y" and prov(provenance, "v")["rule"] == "most_recent"


def test_vote_compares_strings_casefolded_and_stripped():
    ent = spec({"v": "str"}, {"v": ["vote", "priority"]})
    rows = [dict(source="a", id="1", priority=1, quality=0.9, v="Oslo"),
            dict(source="b", id="2", priority=2, quality=0.5, v=" oslo"),
            dict(source="c", id="3", priority=3, quality=0.6, v="Bergen"),
            dict(source="c", id="4", priority=3, quality=0.6, v="bergen "),
            dict(source="c", id="5", priority=3, quality=0.1, v="BERGEN")]
    fused, provenance = fuse(rows, ent)
    # Bergen-like values weigh 1.3 against 1.4 for Oslo-like ones; then priority picks the spelling
    p = prov(provenance, "v")
    assert fused.iloc[0]["v"] == "Oslo" and p["rule"] == "priority" and p["record_id"] == "1"


def test_vote_tie_falls_to_the_next_rule_in_the_chain():
    ent = spec({"v": "str"}, {"v": ["vote", "priority"]})
    rows = [dict(source="a", id="1", priority=2, quality=0.5, v="x"),
            dict(source="b", id="2", priority=1, quality=0.5, v="y")]
    fused, provenance = fuse(rows, ent)
    p = prov(provenance, "v")
    assert fused.iloc[0]["v"] == "y" and p["rule"] == "priority" and p["source"] == "b"


def test_rule_credited_is_the_first_that_leaves_one_value():
    ent = spec({"v": "str"}, {"v": ["priority", "most_recent", "longest"]})
    rows = [dict(source="a", id="1", priority=1, at="2024-01-01", v="old"),
            dict(source="b", id="2", priority=1, at="2024-02-01", v="new"),
            dict(source="c", id="3", priority=5, at="2024-03-01", v="low priority")]
    fused, provenance = fuse(rows, ent)
    p = prov(provenance, "v")
    assert fused.iloc[0]["v"] == "new" and p["rule"] == "most_recent" and p["source"] == "b"


def test_chain_exhausted_uses_deterministic_tie_break():
    ent = spec({"v": "str"}, {"v": ["highest_quality"]})
    rows = [dict(source="b", id="1", priority=2, v="from b"),
            dict(source="c", id="9", priority=1, v="from c 9"),
            dict(source="c", id="3", priority=1, v="from c 3"),
            dict(source="a", id="1", priority=1, v="from a")]
    fused, provenance = fuse(rows, ent)
    p = prov(provenance, "v")
    # lowest priority number, then source name, then record id
    assert fused.iloc[0]["v"] == "from a" and p["rule"] == "tie_break"
    fused, provenance = fuse(rows[:3], ent)
    assert fused.iloc[0]["v"] == "from c 3" and prov(provenance, "v")["record_id"] == "3"


def test_agreeing_candidates_are_agreed_and_the_chain_still_picks_the_record():
    ent = spec({"v": "str"}, {"v": ["most_recent"]})
    rows = [dict(source="a", id="1", priority=1, at="2024-01-01", v="same"),
            dict(source="b", id="2", priority=2, at="2024-06-01", v="same"),
            dict(source="c", id="3", priority=3, at="2025-01-01", v=None)]
    _, provenance = fuse(rows, ent)
    p = prov(provenance, "v")
    assert p["rule"] == "agreed" and not p["conflict"] and p["candidates"] == 2
    assert p["source"] == "b" and p["observed_at"] == T("2024-06-01", tz="UTC")
    _, provenance = fuse(rows[:1], ent)
    assert prov(provenance, "v")["rule"] == "only_value"


def test_case_and_whitespace_variants_agree_and_the_chain_picks_the_spelling():
    ent = spec({"v": "str"}, {"v": ["priority"]})
    rows = [dict(source="a", id="1", priority=2, v="Oslo  Centre"), dict(source="b", id="2", priority=1,
                                                                         v="OSLO centre")]
    _, provenance = fuse(rows, ent)
    p = prov(provenance, "v")
    assert not bool(p["conflict"]) and p["rule"] == "agreed" and p["value"] == "OSLO centre"
    _, provenance = fuse([rows[0], {**rows[1], "v": "Bergen"}], ent)
    p = prov(provenance, "v")
    assert bool(p["conflict"]) and p["rule"] == "priority" and p["value"] == "Bergen"


def test_fused_frame_types_order_and_missing_fields():
    ent = spec({"n": "int", "price": "float", "born": "date", "note": "str"},
               {"default": ["priority"]})
    rows = [dict(entity="z", source="b", id="1", n=5, price=2.5, born=T("2020-01-02")),
            dict(entity="z", source="a", id="2", priority=2, n=7),
            dict(entity="m", source="a", id="3", price=1.0),
            dict(entity="m", source="a", id="4", price=None)]
    fused, provenance = fuse(rows, ent)
    assert list(fused.columns) == ["eid", "n", "price", "born", "note", "_sources", "_record_count"]
    assert fused["eid"].tolist() == ["m", "z"]
    assert fused["n"].dtype == "Int64" and fused["n"].tolist() == [pd.NA, 5]
    assert fused["price"].dtype == "Float64" and fused["price"].tolist() == [1.0, 2.5]
    assert fused["born"].dtype == "datetime64[ns]" and fused["born"].iloc[1] == T("2020-01-02")
    assert fused["note"].isna().all()
    assert fused["_sources"].tolist() == ["a", "a,b"] and fused["_record_count"].tolist() == [2, 2]
    assert provenance[["eid", "field"]].values.tolist() == [["m", "price"], ["z", "born"], ["z", "n"],
                                                             ["z", "price"]]
    assert prov(provenance, "born", "z")["value"] == "2020-01-02"
    assert prov(provenance, "n", "z")["value"] == "5" and prov(provenance, "n", "z")["rule"] == "priority"
    assert prov(provenance, "price", "m")["candidates"] == 1


def test_empty_records_give_empty_typed_frames():
    ent = spec({"v": "str", "n": "int"}, {})
    recs, ids = records([], ent)
    fused, provenance = resolve(recs, ids.astype(str), ent, "eid")
    assert fused.empty and list(fused.columns) == ["eid", "v", "n", "_sources", "_record_count"]
    assert fused["n"].dtype == "Int64"
    assert provenance.empty and list(provenance.columns) == [
        "eid", "field", "value", "source", "record_id", "observed_at", "rule", "candidates", "conflict"]


# --- the vectorized resolver against a record-by-record reference -------------------------


def reference(rows: list[dict], ent: EntitySpec) -> dict:
    fields = list(ent.fields)

    def norm(v):
        return str(v).casefold().strip()

    def compared(v, ftype):
        return " ".join(str(v).split()).casefold() if ftype == "str" else v

    keys = {
        "priority": lambda c, alive, f: c.get("priority", 1),
        "most_recent": lambda c, alive, f: -(T(c["at"]).value if c.get("at") else -(2**62)),
        "highest_quality": lambda c, alive, f: -c["quality"],
        "most_complete": lambda c, alive, f: -sum(c.get(x) is not None for x in fields),
        "longest": lambda c, alive, f: -len(str(c[f])),
        "vote": lambda c, alive, f: -round(sum(a["quality"] for a in alive if norm(a[f]) == norm(c[f])), 9),
    }
    out = {}
    for entity in sorted({r["entity"] for r in rows}):
        for f in fields:
            cands = [r for r in rows if r["entity"] == entity and r.get(f) is not None]
            if not cands:
                continue
            same = len({compared(c[f], ent.fields[f]) for c in cands}) == 1
            rule = ("agreed" if len(cands) > 1 else "only_value") if same else None
            alive = cands
            for name in ent.chain(f):
                scored = [(keys[name](c, alive, f), c) for c in alive]
                best = min(k for k, _ in scored)
                alive = [c for k, c in scored if k == best]
                if rule is None and len({c[f] for c in alive}) == 1:
                    rule = name
            win = min(alive, key=lambda c: (c.get("priority", 1), c["source"], c["id"]))
            out[(entity, f)] = (win[f], win["source"], win["id"], rule or "tie_break", len(cands), not same)
    return out


CHAINS = [list(c) for c in itertools.permutations(
    ["priority", "most_recent", "highest_quality", "most_complete", "longest", "vote"], 2)]


@pytest.mark.parametrize("seed", range(4))
def test_matches_record_by_record_reference(seed):
    rng = random.Random(seed)
    chains = rng.sample(CHAINS, 3)
    ent = spec({"name": "str", "city": "str", "n": "int"},
               {"name": chains[0], "city": chains[1], "n": chains[2] + ["vote"]})
    prio = {"a": 1, "b": 1, "c": 2}
    qual = {"a": 0.3, "b": 0.3, "c": 0.6}
    rows = []
    for _ in range(400):
        src = rng.choice("abc")
        rows.append(dict(
            entity=f"e{rng.randrange(60):02d}", source=src, id=str(rng.randrange(10_000)), priority=prio[src],
            quality=qual[src], at=rng.choice([None, "2024-01-01", "2024-02-01", "2024-03-01"]),
            name=rng.choice([None, "Ann", "ann ", "Ann Lee", "Bo"]),
            city=rng.choice([None, None, "Oslo", "OSLO", "Bergen"]),
            n=rng.choice([None, 1, 2, 30]),
        ))
    _, provenance = fuse(rows, ent)
    expected = reference(rows, ent)
    got = {(r.eid, r.field): (r.value, r.source, r.record_id, r.rule, r.candidates, r.conflict)
           for r in provenance.itertuples()}
    expected = {k: (str(v[0]), *v[1:]) for k, v in expected.items()}
    assert got == expected
