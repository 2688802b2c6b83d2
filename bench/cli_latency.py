"""How long `jammi search` takes from the shell, against the floor of starting Python with the two
libraries any query needs.

The demo project (jammi.yaml and its generated data) is copied to --workdir and its `products`
pipeline materialized once (kept between runs; --fresh starts over). Then, taken in turn, 5
runs each of:

    python -m jammi_assets.cli --project <workdir>/jammi.yaml search products "<query>"
    python -c "import pyarrow, duckdb"

ratio = median search wall / median floor wall. Each search run also reports whether torch was
imported (python -X importtime), which it should not be once the table's ONNX export is cached.
Prints a table and writes bench/results/cli.json.

    flock /tmp/jammi-bench.lock python bench/cli_latency.py [--runs 5] [--workdir /tmp/jammi-cli-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "cli.json"
QUERY = "wireless headphones with long battery life"


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def prepare(workdir: Path, fresh: bool) -> Path:
    project = workdir / "jammi.yaml"
    if fresh:
        shutil.rmtree(workdir, ignore_errors=True)
    if (workdir / ".materialized").exists():
        return project
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "jammi.yaml", project)
    subprocess.run([sys.executable, "-m", "jammi.demo.generate", "--out", str(workdir / "data" / "demo")],
                   check=True, env=env(), cwd=workdir)
    subprocess.run([sys.executable, "-m", "jammi_assets.cli", "--project", str(project), "materialize",
                    "--select", "products"], check=True, env=env(), cwd=workdir)
    (workdir / ".materialized").write_text("ok\n", encoding="utf-8")
    return project


def timed(cmd: list[str], cwd: Path) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=cwd)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout, done.stderr


def imported(importtime_stderr: str, package: str) -> bool:
    names = (line.rsplit("|", 1)[-1].strip() for line in importtime_stderr.splitlines()
             if line.startswith("import time:"))
    return any(n == package or n.startswith(package + ".") for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/jammi-cli-bench"))
    parser.add_argument("--fresh", action="store_true", help="generate and materialize the demo again")
    args = parser.parse_args()
    project = prepare(args.workdir, args.fresh)
    search = [sys.executable, "-m", "jammi_assets.cli", "--project", str(project), "search", "products",
              QUERY, "-k", "5"]
    floor = [sys.executable, "-c", "import pyarrow, duckdb"]
    timed(search, args.workdir)  # the first run warms the page cache for both
    search_s, floor_s = [], []
    for _ in range(args.runs):
        search_s.append(timed(search, args.workdir)[0])
        floor_s.append(timed(floor, args.workdir)[0])
    _, out, err = timed([sys.executable, "-X", "importtime", *search[1:]], args.workdir)
    result = {
        "ratio": round(statistics.median(search_s) / statistics.median(floor_s), 2),
        "search_s": round(statistics.median(search_s), 3), "floor_s": round(statistics.median(floor_s), 3),
        "search_runs_s": [round(s, 3) for s in search_s], "floor_runs_s": [round(s, 3) for s in floor_s],
        "torch_imported": imported(err, "torch"), "dagster_imported": imported(err, "dagster"),
        "sentence_transformers_imported": imported(err, "sentence_transformers"),
        "command": " ".join(["jammi", *search[3:]]), "query": QUERY,
        "definition": "ratio = median wall of `jammi search` / median wall of "
                      "`python -c 'import pyarrow, duckdb'`, runs taken in turn",
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
    }
    print(f"{'figure':<28}{'value':>10}  target")
    print(f"{'jammi search (median s)':<28}{result['search_s']:>10}")
    print(f"{'import pyarrow, duckdb (s)':<28}{result['floor_s']:>10}")
    print(f"{'ratio':<28}{result['ratio']:>10}  <= 3")
    print(f"{'torch imported':<28}{str(result['torch_imported']):>10}  False")
    print(f"{'dagster imported':<28}{str(result['dagster_imported']):>10}  False")
    print("\nits output, first rows:\n" + ("\n".join(out.strip().splitlines()[:4]) or "(none)"))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
