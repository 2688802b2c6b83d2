"""Two more demo sources describing the catalog's products, for entity fusion:

- `inventory`: a warehouse stock table in a DuckDB file. Most rows carry the catalog's
  product id (`catalog_id`, a cross-walked key); about a quarter do not and must be matched.
  Names are written the warehouse way ("kettle, compact - acme (stainless steel)"), prices
  and timestamps are the warehouse's own.
- `partners`: a partner feed landed as JSON Lines in two schema versions. The older files
  (v1) call the fields `product_name`, `maker` and `list_price` (a string); the newer (v2)
  `title`, `brand`, `price` (a number) and add `currency`. Neither carries a catalog key; some
  partner products are not in the catalog at all.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from jammi.demo.vocabulary import BRANDS, CATEGORIES, MATERIALS, START

WAREHOUSES = ["north", "south", "east", "west"]


def _split_title(title: str) -> tuple[str, str, str, str]:
    head, _, material = title.partition(" in ")
    brand, adj, kind = head.split(" ", 2)
    return brand, adj, kind, material


def _warehouse_name(title: str) -> str:
    brand, adj, kind, material = _split_title(title)
    return f"{kind.lower()}, {adj.lower()} - {brand.lower()} ({material.lower()})"


def _partner_name(title: str, rng: random.Random) -> str:
    brand, adj, kind, material = _split_title(title)
    return rng.choice([
        f"{brand} {kind} {adj} {material}",
        f"{adj} {kind} by {brand}, {material}",
        f"{brand.upper()} {kind} ({material})",
    ])


def _clean(products: list[dict]) -> list[dict]:
    ok = []
    for p in products:
        try:
            float(p["price"])
            datetime.fromisoformat(p["updated_at"])
        except (TypeError, ValueError):
            continue
        if p["title"] and float(p["price"]) >= 0 and " in " in p["title"]:
            ok.append(p)
    return ok


def make_inventory(products: list[dict], share: float = 0.6, seed: int = 23) -> list[dict]:
    rng = random.Random(seed)
    chosen = rng.sample(_clean(products), k=int(len(products) * share))
    rows = []
    for i, p in enumerate(chosen):
        price = float(p["price"]) * rng.choice([1.0, 1.0, 0.95, 1.1])
        rows.append({
            "sku": f"INV-{50000 + i}",
            "catalog_id": p["product_id"] if rng.random() > 0.25 else None,
            "item_name": _warehouse_name(p["title"]),
            "brand": p["brand"].lower(),
            "on_hand": rng.randrange(0, 400),
            "warehouse": rng.choice(WAREHOUSES),
            "unit_price": round(price, 2),
            "counted_at": datetime.fromisoformat(p["updated_at"]) + timedelta(days=rng.randrange(-30, 90)),
        })
    return rows


def _new_title(rng: random.Random) -> tuple[str, str]:
    category = rng.choice(list(CATEGORIES))
    brand = rng.choice(BRANDS)
    title = f"{brand} Limited {rng.choice(CATEGORIES[category]).title()} in {rng.choice(MATERIALS).title()}"
    return title, brand


def make_partner_feed(products: list[dict], n: int, seed: int = 31) -> tuple[list[dict], list[dict]]:
    """(v1 records, v2 records): two thirds describe catalog products, the rest are new."""
    rng = random.Random(seed)
    known = rng.sample(_clean(products), k=min(len(products), n * 2 // 3))
    v1, v2 = [], []
    for i in range(n):
        if i < len(known):
            title, brand, price = known[i]["title"], known[i]["brand"], float(known[i]["price"])
        else:
            (title, brand), price = _new_title(rng), rng.uniform(5, 600)
        seen = (START + timedelta(minutes=rng.randrange(0, 60 * 24 * 700))).isoformat()
        name = _partner_name(title, rng)
        if i % 2:
            v1.append({"partner_sku": f"P{i:06d}", "product_name": name, "maker": brand,
                       "list_price": f"{price:.2f}", "seen_at": seen})
        else:
            v2.append({"partner_sku": f"P{i:06d}", "title": name, "brand": brand,
                       "price": round(price * rng.choice([1.0, 0.9]), 2), "currency": "USD",
                       "seen_at": seen})
    return v1, v2


def write_fusion_demo(out_dir: Path, products: list[dict], partners: int = 600) -> dict[str, int]:
    inventory = make_inventory(products)
    db = out_dir / "inventory.duckdb"
    db.unlink(missing_ok=True)
    frame = pd.DataFrame(inventory).astype({"catalog_id": "Int64"})
    with duckdb.connect(str(db)) as con:
        con.register("rows", frame)
        con.execute("CREATE TABLE inventory AS SELECT * FROM rows")
    v1, v2 = make_partner_feed(products, partners)
    feed = out_dir / "partners"
    feed.mkdir(exist_ok=True)
    for name, records in (("feed-2024-v1.jsonl", v1), ("feed-2025-v2.jsonl", v2)):
        with open(feed / name, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
    return {"inventory": len(inventory), "partners": len(v1) + len(v2)}
