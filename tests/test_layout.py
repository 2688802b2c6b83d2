"""The structure every later change builds on: the engine (jammi/) imports no Dagster and no
module of the Dagster layer, its packages depend on each other in one direction only, and the
command line starts without Dagster for commands that do not run the asset graph."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

DAGSTER_LAYER = ("dagster", "dagster_pandera", "jammi_assets", "resources", "sensors")
# each engine package's rank; an import may go to the same rank or a lower one, never higher
RANK = {
    "errors": 0, "redact": 0, "types": 0, "storage": 0, "keys": 0, "spec": 0,
    "ingest": 1, "silver": 1, "quality": 1, "embedding": 1,
    "fusion": 2, "tables": 2, "chunking": 2,
    "query": 3,
    "app": 4, "demo": 4,
    "cli": 5, "terminal": 5,
}


def engine_imports() -> list[tuple[str, str]]:
    """(module path, imported module) for every import in jammi/."""
    found = []
    for path in sorted((REPO / "jammi").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found += [(str(path.relative_to(REPO)), node.module)]
            elif isinstance(node, ast.Import):
                found += [(str(path.relative_to(REPO)), a.name) for a in node.names]
    return found


def package_of(path_or_module: str) -> str | None:
    parts = Path(path_or_module.replace(".", "/")).parts
    return parts[1] if len(parts) > 1 and parts[0] == "jammi" else None


def test_engine_imports_no_dagster():
    offending = [(f, m) for f, m in engine_imports() if m.split(".")[0] in DAGSTER_LAYER]
    assert offending == []


def test_every_engine_package_has_a_rank():
    packages = {p.name.removesuffix(".py") for p in (REPO / "jammi").iterdir()
                if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert packages <= set(RANK), packages - set(RANK)


def test_engine_dependencies_run_one_way():
    against = []
    for path, module in engine_imports():
        here, there = package_of(path.removesuffix(".py")), package_of(module)
        if here and there and RANK[there] > RANK[here]:
            against.append(f"{path} imports {module}")
    assert against == []


def test_cli_and_facade_start_without_dagster():
    code = ("import sys, jammi.cli, jammi.app.facade, jammi.query.search; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{DAGSTER_LAYER!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout
    assert out.strip() == "[]"


def test_every_module_says_what_it_holds():
    packages = ["jammi", "jammi_assets", "resources", "sensors"]
    silent = [str(p.relative_to(REPO)) for pkg in packages for p in (REPO / pkg).rglob("*.py")
              if p.name != "__init__.py" and not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert silent == []
