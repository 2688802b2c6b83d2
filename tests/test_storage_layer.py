"""Every file the engine writes goes through the storage layer (jammi.store over local paths
and object-store URLs, jammi.storage's atomic local writes, jammi.shared's files that every
node shares): no other module of jammi/ renames files into place (`os.replace`, `os.rename`,
`shutil.move`, `Path.replace`, `Path.rename`) or writes them with pathlib (`Path.write_text`,
`Path.write_bytes`).

ALLOWED is a ratchet: the modules not migrated yet, each with the number of such calls it holds
today. It may only shrink. A module that gains a call fails, a module not listed that makes one
fails, and a listed module whose calls went away fails until its entry is removed (or lowered),
so a migration cannot be undone quietly later."""

from __future__ import annotations

import ast
from collections import Counter

from tests.conftest import REPO

STORAGE_LAYER = {"jammi/store.py", "jammi/storage.py", "jammi/shared.py"}

ALLOWED = {
    # node-local files, never shared between nodes: the model exports in the model cache
    "jammi/embedding/backends.py": 2,
    "jammi/embedding/ort_session.py": 1,
    # the demo's input files (data/demo), written by `make demo`'s generator, not artifacts
    "jammi/demo/versioned.py": 1,
    # this node's private catalog state file and its PostgreSQL marker (node-local by design)
    "jammi/tables/catalog.py": 2,
}

RENAMES = {("os", "replace"), ("os", "rename"), ("shutil", "move")}
PATH_WRITES = {"write_text", "write_bytes"}
PATH_RENAMES = {"replace", "rename"}  # Path.replace(target): one argument (str.replace takes two)
LAYER_MODULES = {"store", "storage"}  # store.write_text(...) is the layer itself


def direct_writes(source: str) -> list[tuple[int, str]]:
    """(line, call) of each direct rename or pathlib write in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func, owner = node.func, node.func.value
        owner_name = owner.id if isinstance(owner, ast.Name) else None
        if (owner_name, func.attr) in RENAMES:
            found.append((node.lineno, f"{owner_name}.{func.attr}"))
        elif owner_name in LAYER_MODULES:
            continue
        elif func.attr in PATH_WRITES:
            found.append((node.lineno, f".{func.attr}"))
        elif func.attr in PATH_RENAMES and len(node.args) == 1 and not node.keywords:
            found.append((node.lineno, f".{func.attr}"))
    return sorted(found)


def engine_writes() -> dict[str, list[tuple[int, str]]]:
    out = {}
    for path in sorted((REPO / "jammi").rglob("*.py")):
        module = path.relative_to(REPO).as_posix()
        if module in STORAGE_LAYER:
            continue
        calls = direct_writes(path.read_text(encoding="utf-8"))
        if calls:
            out[module] = calls
    return out


def test_the_scan_finds_what_it_looks_for():
    source = ("import os, shutil\nos.replace(a, b)\nshutil.move(a, b)\np.write_text('x')\n"
              "tmp.replace(target)\n'a'.replace('a', 'b')\nstore.write_text(url, 'x')\n"
              "df.rename(columns={})\n")
    assert direct_writes(source) == [(2, "os.replace"), (3, "shutil.move"), (4, ".write_text"),
                                     (5, ".replace")]


def test_no_engine_module_writes_outside_the_storage_layer():
    found = engine_writes()
    counts = Counter({module: len(calls) for module, calls in found.items()})
    new = {m: found[m] for m in counts if m not in ALLOWED}
    assert not new, f"write through jammi.store instead (or jammi.storage for local-only files): {new}"
    grew = {m: found[m] for m in counts if m in ALLOWED and counts[m] > ALLOWED[m]}
    assert not grew, f"these modules gained direct writes; route them through jammi.store: {grew}"
    shrank = {m: (ALLOWED[m], counts.get(m, 0)) for m in ALLOWED if counts.get(m, 0) < ALLOWED[m]}
    assert not shrank, f"migrated, well done: lower or remove their ALLOWED entries (allowed, now): {shrank}"
