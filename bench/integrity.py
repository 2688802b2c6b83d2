"""Random damage to the files of a built and refreshed table, and what Jammi does about it.

A project (one CSV source of `--rows` demo products, one pipeline) is built, then refreshed
(edits, deletions and additions), so that the version it serves has a base segment, a refresh
segment and a deletion file, each segment with its HNSW sidecar (`.usearch`) and rowmap, and
the validated frame they were embedded from (which search reads its columns from). That copy
is kept pristine. Each trial copies it, damages one file of one kind — bytes flipped at
random offsets (1 to 64 of them, in one run or scattered) or the file cut short at a random
length — and does what a user does, through the `jammi` command line (in process, as the
console script runs it):

1. `jammi search` for a few queries and `jammi sql` over the table (every key, its content hash
   and its vector's sum): each must answer exactly as the pristine copy does, or fail. A
   different answer is a wrong row served: the damage was not detected in time.
2. `jammi verify` must exit 1 (the damage found).
3. `jammi verify --repair`, then `jammi verify` must be clean and the table equal to the
   pristine one (keys, content hashes; vectors within `--tolerance`), which is what a clean
   rebuild of the same rows holds.

Any output with a Python traceback, or a command that raised instead of exiting, counts as a
traceback. Tables up to 2,048 rows a segment are searched by USearch's exact scan, so the
pristine answers are the exact ones and a sidecar scored exactly gives them too.

Prints a table and writes bench/results/integrity.json.

    python bench/integrity.py [--trials 20] [--rows 600] [--seed 11]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from jammi.demo.generate import make_products  # noqa: E402
from jammi.tables.catalog import TABLES_DIR, Catalog  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "integrity.json"
PIPELINE = "products_pipe"
FIELDS = ["product_id", "title", "description", "category", "brand", "price"]
QUERIES = ["waterproof jacket for rainy hikes", "espresso machine", "running shoes", "yoga mat"]
KINDS = ("segment", "refresh_segment", "deletes", "usearch", "rowmap", "frame")
TABLE_SQL = (f"SELECT _row_id, _content_hash, round(list_sum(vector), 5) AS s "
             f"FROM jammi.{PIPELINE}_embeddings ORDER BY _row_id")


def cli(config: Path, *args: str) -> tuple[int, str, bool]:
    """(exit code, output, traceback?) of `jammi --project config args...`, in process."""
    from click.testing import CliRunner

    from jammi.cli import cli as jammi
    from jammi_assets.cli import materialize as run_graph

    result = CliRunner().invoke(jammi, ["--project", str(config), *args], obj={"materialize": run_graph})
    raised = result.exception is not None and not isinstance(result.exception, SystemExit)
    return result.exit_code, result.output, raised or "Traceback (most recent call last)" in result.output


def write_source(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)


def make_project(root: Path, rows: int, rng: random.Random) -> Path:
    """Built, then refreshed: the version served has a refresh segment and a deletion file."""
    data = root / "data" / "products.csv"
    data.parent.mkdir(parents=True)
    made = make_products(rows, seed=rng.randint(0, 10**6), dirty=False)
    records = [{k: r[k] for k in FIELDS} for r in made]
    write_source(data, records)
    columns = {"product_id": "int", "title": "str", "description": "str", "category": "str", "brand": "str",
               "price": {"type": "float", "ge": 0}}
    doc = {"artifact_dir": "artifacts",
           "sources": {"products": {"kind": "csv", "path": "data/products.csv", "key": "product_id",
                                    "columns": columns}},
           "pipelines": {PIPELINE: {"source": "products", "text_columns": ["title", "description"]}}}
    config = root / "jammi.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    code, out, _ = cli(config, "materialize")
    assert code == 0, out
    changed = list(records)
    for i in rng.sample(range(len(changed)), max(3, rows // 30)):
        changed[i] = {**changed[i], "description": changed[i]["description"] + " (revised)"}
    gone = set(rng.sample(range(len(changed)), max(2, rows // 60)))
    changed = [r for i, r in enumerate(changed) if i not in gone]
    top = max(int(r["product_id"]) for r in records)
    changed += [{**records[i], "product_id": top + 1 + j} for j, i in enumerate(rng.sample(range(rows), 5))]
    write_source(data, changed)
    code, out, _ = cli(config, "materialize")
    assert code == 0, out
    return config


def files_of(root: Path) -> dict[str, Path]:
    """The damageable file of each kind in the version served."""
    catalog = Catalog(root / "artifacts")
    rec = catalog.active(pipeline=PIPELINE)
    version = catalog.current_version(rec)
    assert len(version.segments) == 2 and len(version.deletes) == 1, version
    tables = root / "artifacts" / TABLES_DIR
    base, refresh = (tables / ref.file for ref in version.segments)
    return {"segment": base, "refresh_segment": refresh, "deletes": tables / version.deletes[0].file,
            "usearch": base.with_suffix(".usearch"), "rowmap": base.with_suffix(".rowmap"),
            "frame": root / "artifacts" / "frames" / "validated_products.parquet"}


def damage(path: Path, rng: random.Random) -> str:
    """Flip bytes at random offsets, or cut the file short; says which."""
    data = bytearray(path.read_bytes())
    if rng.random() < 0.25:
        keep = rng.randrange(0, len(data))
        path.write_bytes(bytes(data[:keep]))
        return f"truncated to {keep} of {len(data)} bytes"
    count = rng.randint(1, 64)
    if rng.random() < 0.5:
        start = rng.randrange(0, max(1, len(data) - count))
        offsets = list(range(start, min(len(data), start + count)))
    else:
        offsets = sorted(rng.sample(range(len(data)), min(count, len(data))))
    for i in offsets:
        data[i] ^= rng.randint(1, 255)
    path.write_bytes(bytes(data))
    return f"{len(offsets)} bytes flipped from offset {offsets[0]} of {len(data)}"


def answers(config: Path) -> dict[str, tuple[int, str, bool]]:
    """What a user asks: searches and the table's rows through sql."""
    out = {f"search {q}": cli(config, "search", PIPELINE, q, "-k", "10", "--format", "csv") for q in QUERIES}
    out["sql"] = cli(config, "sql", TABLE_SQL, "--format", "csv")
    return out


def search_rows(output: str) -> tuple[list[float], set[str]]:
    """Of `jammi search --format csv`'s hits (its CSV, after any log line): every score, and the
    keys of the hits that beat the last one (among rows tied at the k-th score, which ones make
    the cut is arbitrary, in an exact scan as in a graph)."""
    lines = output.splitlines()
    header = next((i for i, line in enumerate(lines) if line.endswith(",_row_id,similarity")), None)
    if header is None:
        return [], set()
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[header:]))))
    scores = [round(float(r["similarity"]), 4) for r in rows]
    last = min(scores, default=0.0)
    return scores, {r["_row_id"] for r, s in zip(rows, scores, strict=True) if s > last + 1e-4}


def same_answer(name: str, got: str, pristine: str) -> bool:
    if name.startswith("search"):
        return search_rows(got) == search_rows(pristine)
    return got.strip() == pristine.strip()


def table_of(config: Path) -> dict[str, tuple[str, list[float]]]:
    from jammi.app.facade import Jammi
    from jammi.spec.project import load_project

    frame = Jammi(load_project(config)).sql(
        f"SELECT _row_id, _content_hash, vector FROM jammi.{PIPELINE}_embeddings")
    return {k: (h, list(v)) for k, h, v in zip(frame["_row_id"], frame["_content_hash"], frame["vector"],
                                                strict=True)}


def equal_tables(a: dict, b: dict, tolerance: float) -> tuple[bool, float]:
    if a.keys() != b.keys() or any(a[k][0] != b[k][0] for k in a):
        return False, float("inf")
    worst = float(max((abs(x - y) for k in a for x, y in zip(a[k][1], b[k][1], strict=True)), default=0.0))
    return bool(worst <= tolerance), worst


def trial(pristine: Path, work: Path, kind: str, rng: random.Random, expected: dict, table: dict,
          tolerance: float) -> dict:
    root = work / f"proj-{kind}-{rng.randrange(10**9)}"  # a new folder each time, as a new project is
    shutil.copytree(pristine, root)
    config = root / "jammi.yaml"
    Catalog(root / "artifacts").publish()  # this copy's own published file
    target = files_of(root)[kind]
    what = damage(target, rng)
    tracebacks: list[str] = []
    wrong: list[str] = []
    for name, (code, out, raised) in answers(config).items():
        if raised:
            tracebacks.append(name)
        elif code == 0 and not same_answer(name, out, expected[name][1]):
            wrong.append(name)
    verified, _, raised = cli(config, "verify", "--format", "csv")
    tracebacks += ["verify"] if raised else []
    detected = verified == 1 and not wrong
    code, repair_out, raised = cli(config, "verify", "--repair")
    tracebacks += ["verify --repair"] if raised else []
    clean, _, raised = cli(config, "verify")
    tracebacks += ["verify after repair"] if raised else []
    equal, worst = (False, float("inf"))
    if code == 0 and clean == 0:
        equal, worst = equal_tables(table_of(config), table, tolerance)
    shutil.rmtree(root, ignore_errors=True)
    return {"kind": kind, "file": target.name, "damage": what, "detected": detected, "wrong_answers": wrong,
            "verify_exit": verified, "repair_exit": code, "repaired": code == 0 and clean == 0 and equal,
            "max_vector_difference": None if worst == float("inf") else worst, "tracebacks": tracebacks,
            "repair_said": repair_out.strip().splitlines()[-3:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="damages of each kind of file")
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--tolerance", type=float, default=1e-5, help="largest vector difference after repair")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--merge", action="store_true",
                    help="keep the trials of the kinds this run does not run from the existing --results "
                         "(each kind records the commit it was measured at)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="jammi-integrity-"))
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["JAMMI_CACHE_DIR"] = str(work / "cache")
    t0 = time.perf_counter()
    pristine = work / "pristine"
    pristine.mkdir()
    config = make_project(pristine, args.rows, rng)
    expected = answers(config)
    assert all(code == 0 for code, _, _ in expected.values()), expected
    table = table_of(config)
    print(f"pristine: {len(table)} rows in {work}; {args.trials} damages of each kind of file")
    trials = []
    for kind in args.kinds.split(","):
        for i in range(args.trials):
            result = trial(pristine, work, kind, rng, expected, table, args.tolerance)
            trials.append(result)
            traced = f"traceback {result['tracebacks']}  " if result["tracebacks"] else ""
            print(f"  {kind:16s} {i + 1:3d}  {'detected' if result['detected'] else 'MISSED  '}  "
                  f"{'repaired' if result['repaired'] else 'NOT REPAIRED'}  {traced}{result['damage']}",
                  flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    measured_at = {kind: {"commit": commit, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                   for kind in args.kinds.split(",")}
    if args.merge and args.results.exists():
        before = json.loads(args.results.read_text(encoding="utf-8"))
        kept = [t for t in before["trials"] if t["kind"] not in measured_at]
        measured_at = {**{k: v for k, v in before.get("measured_at", {}).items() if k not in measured_at},
                       **{k: {"commit": before.get("commit"), "date": before.get("date")}
                          for k in {t["kind"] for t in kept} if k not in before.get("measured_at", {})},
                       **measured_at}
        trials = kept + trials
    kinds = [k for k in KINDS if k in measured_at] + [k for k in measured_at if k not in KINDS]
    summary = {}
    for kind in kinds:
        mine = [t for t in trials if t["kind"] == kind]
        summary[kind] = {"trials": len(mine), "detected": sum(t["detected"] for t in mine),
                         "repaired": sum(t["repaired"] for t in mine),
                         "tracebacks": sum(bool(t["tracebacks"]) for t in mine)}
    counted = ("trials", "detected", "repaired", "tracebacks")
    totals = {k: sum(s[k] for s in summary.values()) for k in counted}
    print(f"\n{'file':18s} {'trials':>7s} {'detected':>9s} {'repaired':>9s} {'tracebacks':>11s}")
    for kind, s in {**summary, "all": totals}.items():
        print(f"{kind:18s} {s['trials']:7d} {s['detected']:9d} {s['repaired']:9d} {s['tracebacks']:11d}")
    targets = {"detected_share": "== 1.0", "repaired_share": "== 1.0", "tracebacks": "== 0"}
    derived = {"detected_share": totals["detected"] / totals["trials"],
               "repaired_share": totals["repaired"] / totals["trials"], "tracebacks": totals["tracebacks"]}
    payload = {"benchmark": "integrity", "date": time.strftime("%Y-%m-%d"), "commit": commit,
               "measured_at": measured_at,
               "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
               "settings": {"trials_per_kind": args.trials, "rows": args.rows, "seed": args.seed,
                            "tolerance": args.tolerance, "queries": QUERIES},
               "definitions": {
                   "detected": "every answer (search, sql) equals the pristine copy's or the command failed, "
                               "and `jammi verify` exits 1",
                   "repaired": "`jammi verify --repair` exits 0, `jammi verify` is then clean and the table "
                               "equals the pristine one (keys, content hashes, vectors within tolerance)",
                   "tracebacks": "trials in which any command printed a Python traceback or raised"},
               "summary": summary, "totals": totals, "targets": targets, "derived": derived,
               "seconds": round(time.perf_counter() - t0, 1), "trials": trials}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"\n{time.perf_counter() - t0:.0f} s in all; wrote {args.results}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
