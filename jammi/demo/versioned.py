"""A demo source whose JSONL records come in two schema versions (see docs/guide/schema-evolution.md).

`write_partner_files(root)` writes `data/partners/partners-2023.jsonl` (schema v1: `name`,
`price` as text, `contact` as "first last", a deprecated `fax`) and `partners-2024.jsonl` (v2,
tagged `schema_version: v2`); `PARTNERS_SOURCE` is the matching `sources.partners` entry.
"""

from __future__ import annotations

import json
from pathlib import Path

PARTNERS_SOURCE: dict = {
    "kind": "jsonl",
    "path": "data/partners/*.jsonl",
    "key": "partner_sku",
    "description": "Partner catalogue; 2023 files use schema v1, 2024 files v2.",
    "columns": {
        "partner_sku": {"type": "str", "nullable": False},
        "title": {"type": "str", "nullable": False},
        "description": "str",
        "price": {"type": "float", "ge": 0},
        "currency": {"type": "str", "nullable": False, "isin": ["USD", "EUR", "GBP"]},
        "contact_first": "str",
        "contact_last": "str",
        "schema_version": "str",
    },
    "quality": {"schema_conformance": {"max_rate": 0.5}},  # the demo quarantines 2 of 6 rows
    "schema": {
        "current": "v2",
        "version_column": "schema_version",
        "versions": {
            "v1": {
                "columns": {
                    "partner_sku": {"type": "str", "nullable": False},
                    "name": {"type": "str", "nullable": False},
                    "description": "str",
                    "price": "str",
                    "contact": "str",
                    "fax": "str",
                },
                "deprecated": ["fax"],
            },
        },
        "migrations": [
            {"from": "v1", "to": "v2", "steps": [
                {"rename": {"from": "name", "to": "title"}},
                {"cast": {"column": "price", "to": "float"}},
                {"add": {"column": "currency", "default": "USD"}},
                {"split": {"column": "contact", "into": ["contact_first", "contact_last"], "sep": " "}},
                {"drop": {"column": "fax"}},
            ]},
        ],
    },
}

V1_RECORDS = [
    {"partner_sku": "P-100", "name": "Trail running shoes", "description": "Light shoes for wet trails",
     "price": "59.50", "contact": "Ana Silva", "fax": "+1 555 0100"},
    {"partner_sku": "P-101", "name": "Espresso grinder", "description": "Conical burr grinder",
     "price": "129", "contact": "Li Wei", "fax": None},
    {"partner_sku": "P-102", "name": "Camping stove", "description": "Two-burner gas stove",
     "price": "forty", "contact": "Sam Okafor"},  # not a number: quarantined after the cast
]
V2_RECORDS = [
    {"partner_sku": "P-200", "title": "Yoga mat", "description": "Non-slip mat", "price": 25.0,
     "currency": "EUR", "contact_first": "Mia", "contact_last": "Berg", "schema_version": "v2"},
    {"partner_sku": "P-201", "title": "Cast iron skillet", "description": "Pre-seasoned pan",
     "price": 35.0, "currency": "GBP", "contact_first": "Tom", "contact_last": "Reed",
     "schema_version": "v2"},
    {"partner_sku": "P-202", "title": "Desk lamp", "price": 19.0, "currency": "USD",
     "schema_version": "v3"},  # unknown version tag: quarantined with the value named
]


def write_partner_files(root: Path) -> list[Path]:
    """Write the two JSONL files under `root/data/partners/`; returns their paths."""
    folder = Path(root) / "data" / "partners"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, records in (("partners-2023.jsonl", V1_RECORDS), ("partners-2024.jsonl", V2_RECORDS)):
        path = folder / name
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        paths.append(path)
    return paths
