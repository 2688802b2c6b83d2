"""The structure every later change builds on: the engine (jammi/) imports no Dagster and no
module of the Dagster layer, its packages depend on each other in one direction only, no
modules of the engine and the Dagster layer import each other in a cycle, and the command line
starts without Dagster for commands that do not run the asset graph."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from tests.conftest import REPO

DAGSTER_LAYER = ("dagster", "dagster_pandera", "jammi_assets", "resources", "sensors")
OUR_PACKAGES = ("jammi", "jammi_assets", "resources", "sensors")
# each engine package's rank; an import may go to the same rank or a lower one, never higher
RANK = {
    "errors": 0, "redact": 0, "types": 0, "storage": 0, "store": 0, "shared": 0, "keys": 0, "spec": 0,
    "checksums": 0, "pg": 0,
    "ingest": 1, "silver": 1, "quality": 1, "embedding": 1,
    "fusion": 2, "tables": 2, "chunking": 2,
    "query": 3, "sinks": 3,
    "app": 4, "demo": 4,
    "cli": 5, "terminal": 5,
    "__init__": 5,  # jammi/__init__.py: the public API, jammi.Jammi (the app facade), loaded lazily
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


@pytest.mark.slow
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


# --- import cycles ---------------------------------------------------------------------------
#
# Every import statement counts, at module level or inside a function (an import deferred into
# a function still makes the two modules depend on each other), except those under
# `if TYPE_CHECKING:`, which never run. An import names the module it loads: `import a.b` and
# `from a import b` name the module a.b when there is one, `from a.b import name` names a.b.


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `packages` under `root`."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(module: str, path: Path) -> set[tuple[str, str | None]]:
    """What `module` (the file at `path`) imports, relative imports resolved: (module, None) for
    `import module`, (module, name) for `from module import name`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[tuple[str, str | None]] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            names.update((base, alias.name) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return names


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports: `from a import b` goes to a.b when that
    is a module, else to a; a name that is no module of theirs, to the nearest enclosing one."""
    files = module_files(root, packages)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for base, name in imported_names(module, path):
            target = f"{base}.{name}" if f"{base}.{name}" in files else base
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target:
                targets.add(target)
        graph[module] = targets - {module}
    return graph


def _shortest_cycle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside `within` (a strongly connected set)."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for there in sorted(graph[here] & within):
            if there == start:
                path = [here]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, start]
            if there not in came_from:
                came_from[there] = here
                queue.append(there)
    raise AssertionError(f"{start} is in no cycle")


def import_cycles(root: Path, packages: Sequence[str]) -> list[list[str]]:
    """One cycle per group of modules that import each other (directly or around a loop), each
    as [a, b, ..., a] starting at the group's first module by name; [] when there is none."""
    graph = import_graph(root, packages)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                connect(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(_shortest_cycle(graph, min(g), g) for g in groups)


def test_no_import_cycles():
    cycles = [" -> ".join(c) for c in import_cycles(REPO, OUR_PACKAGES)]
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def _plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_a_planted_cycle_fails_and_is_named(tmp_path: Path):
    """Three modules in a loop, closed by a relative import inside a function: found, named in
    order, and the layout test's assertion fails on it."""
    _plant(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "import pkg.sub.c\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "def late():\n    from ..a import thing\n    return thing\n",
        "other/__init__.py": "",
        "other/d.py": "from pkg.a import thing\n",  # into the loop, not part of it
    })
    assert import_cycles(tmp_path, ["pkg", "other"]) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    with pytest.raises(AssertionError, match=r"pkg\.a -> pkg\.b -> pkg\.sub\.c -> pkg\.a"):
        cycles = [" -> ".join(c) for c in import_cycles(tmp_path, ["pkg", "other"])]
        assert cycles == [], "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(("b_text", "cycles"), [
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import T\n", []),
    ("from . import a\n", [["pkg.a", "pkg.b", "pkg.a"]]),
    ("import pkg.a as alias\n", [["pkg.a", "pkg.b", "pkg.a"]]),
    ("class K:\n    def m(self):\n        from pkg.a import T\n", [["pkg.a", "pkg.b", "pkg.a"]]),
    ("import pkg\n", []),  # the package's __init__ imports nothing
    ("from pkg import a\n", [["pkg.a", "pkg.b", "pkg.a"]]),
    ("from pkg import VALUE\n", []),  # a name of the package, not the module pkg.a
])
def test_which_imports_count(tmp_path: Path, b_text: str, cycles: list[list[str]]):
    _plant(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "from pkg.b import x\n", "pkg/b.py": b_text})
    assert import_cycles(tmp_path, ["pkg"]) == cycles
