"""Deterministic demo corpus: a product catalog (CSV), customer reviews (JSONL files) and a
dozen long town reports (JSONL) that the demo chunks.

Realistic enough to search: brands, product types, materials and features combine into
titles and descriptions; a few rows are dirty on purpose (null descriptions, empty
texts, negative prices, unparseable dates, the same product listed twice under two keys,
a description far longer than the model window), so every path of the pipeline shows.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

from jammi.demo.documents import make_documents
from jammi.demo.vocabulary import (
    ADJECTIVES,
    BRANDS,
    CATEGORIES,
    FEATURES,
    MATERIALS,
    REVIEW_OPENERS,
    REVIEW_VERDICTS,
    START,
    USES,
)

REPORTS = 12  # long documents, chunked by the demo's `reports` pipeline
REVIEWS_START, REVIEW_DAYS = datetime(2026, 11, 23), 7  # the demo's daily review partitions


def _product(rng: random.Random, pid: int) -> dict:
    category = rng.choice(list(CATEGORIES))
    kind = rng.choice(CATEGORIES[category])
    brand, adj, material = rng.choice(BRANDS), rng.choice(ADJECTIVES), rng.choice(MATERIALS)
    title = f"{brand} {adj.capitalize()} {kind.title()} in {material.title()}"
    description = (
        f"A {adj} {kind} made from {material}, designed for {rng.choice(USES)}. "
        f"Comes with {rng.choice(FEATURES)} and {rng.choice(FEATURES)}."
    )
    return {
        "product_id": pid,
        "title": title,
        "description": description,
        "category": category,
        "brand": brand,
        "price": f"{rng.uniform(5, 600):.2f}",
        "updated_at": (START + timedelta(minutes=rng.randrange(0, 60 * 24 * 600))).isoformat(),
    }


def make_products(n: int, seed: int = 7, dirty: bool = True) -> list[dict]:
    """`n` products; with `dirty`, about 2% of them carry one of the planted defects."""
    rng = random.Random(seed)
    rows = [_product(rng, 1000 + i) for i in range(n)]
    if not dirty:
        return rows
    for j, i in enumerate(rng.sample(range(n), k=min(n, max(8, n // 50)))):
        row = rows[i]
        match j % 6:
            case 0:
                row["description"] = None  # title alone is still embedded
            case 1:
                row["title"], row["description"] = "", None  # nothing to embed: skipped
            case 2:
                row["price"] = f"-{row['price']}"  # quarantined: price < 0
            case 3:
                row["updated_at"] = "last tuesday"  # quarantined: not a date
            case 4:
                src = rows[(i + 1) % n]  # the same product listed under a second key
                row.update({k: src[k] for k in ("title", "description", "category", "brand")})
            case 5:
                row["description"] = " ".join([row["description"]] * 40)  # > 256 tokens
    return rows


def make_reviews(products: list[dict], per_product: float = 1.5, seed: int = 11) -> list[dict]:
    rng = random.Random(seed)
    reviews = []
    for i in range(int(len(products) * per_product)):
        product = rng.choice(products)
        rating = rng.choices([1, 2, 3, 4, 5], weights=[1, 1, 2, 4, 4])[0]
        kind = product["title"].split(" in ")[0]
        body = f"{rng.choice(REVIEW_OPENERS)} {rng.choice(USES)}: {rng.choice(REVIEW_VERDICTS[rating])}."
        reviews.append({
            "review_id": f"r{i:07d}",
            "product_id": product["product_id"],
            "rating": rating,
            "headline": f"{kind}: {rng.choice(REVIEW_VERDICTS[rating])}",
            "body": body if i % 97 else None,
            "created_at": (REVIEWS_START + timedelta(minutes=rng.randrange(0, 60 * 24 * REVIEW_DAYS))
                           ).isoformat(),
        })
    return reviews


def write_demo(out_dir: Path, products: int = 2000, review_files: int = 2) -> dict[str, int]:
    """Write products.csv and reviews/part-*.jsonl under `out_dir`; same input, same bytes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = make_products(products)
    with open(out_dir / "products.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    reviews = make_reviews(rows)
    (out_dir / "reviews").mkdir(exist_ok=True)
    for part in range(review_files):
        chunk = reviews[part::review_files]
        with open(out_dir / "reviews" / f"part-{part:03d}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in chunk)
    from jammi.demo.fusion_data import write_fusion_demo  # here: it loads pandas and DuckDB

    fusion = write_fusion_demo(out_dir, rows, partners=max(50, products * 3 // 10))
    reports = make_documents(REPORTS)
    with open(out_dir / "reports.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in reports)
    return {"products": len(rows), "reviews": len(reviews), **fusion, "reports": len(reports)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the Jammi demo corpus.")
    parser.add_argument("--out", default="data/demo", help="output directory")
    parser.add_argument("--products", type=int, default=2000, help="number of products")
    parser.add_argument("--scale", type=int, default=1, help="multiply the corpus size (benchmarks)")
    args = parser.parse_args(argv)
    counts = write_demo(Path(args.out), products=args.products * args.scale)
    print(f"demo data in {args.out}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
