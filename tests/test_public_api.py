"""The public Python API: `from jammi import Jammi`, loaded lazily so that `import jammi` costs
nothing, with explicit typed signatures and docstrings on the facade, the command line and the
Dagster Component."""

from __future__ import annotations

import inspect
import subprocess
import sys

import click
import pytest

import jammi
from jammi.app.facade import Jammi
from tests.conftest import REPO

HEAVY = {"torch", "pandas", "dagster"}


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return set(eval(out.strip().splitlines()[-1]))


@pytest.mark.slow
def test_jammi_Jammi_is_the_facade_and_imports_no_heavy_library():
    assert jammi.Jammi is Jammi
    assert set(jammi.__all__) == {"Jammi", "__version__"}
    assert _loaded_after("import jammi; jammi.Jammi") == set()
    assert _loaded_after("from jammi import Jammi") == set()


@pytest.mark.slow
def test_import_jammi_loads_neither_the_facade_nor_duckdb():
    out = subprocess.run([sys.executable, "-c", "import sys, jammi; print('jammi.app.facade' in sys.modules, "
                          "'duckdb' in sys.modules)"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Jami'"):
        jammi.Jami  # noqa: B018


def _public_methods(cls: type) -> list[tuple[str, object]]:
    return [(n, f) for n, f in vars(cls).items()
            if callable(f) and (not n.startswith("_") or n == "__init__")]


@pytest.mark.parametrize(("name", "method"), _public_methods(Jammi))
def test_every_facade_method_has_a_docstring_and_an_explicit_typed_signature(name, method):
    assert (method.__doc__ or "").strip(), f"Jammi.{name} has no docstring"
    sig = inspect.signature(method)
    params = list(sig.parameters.values())[1:]  # self
    assert not [p.name for p in params if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL)], name
    assert [p.name for p in params if p.annotation is p.empty] == [], name
    assert sig.return_annotation is not sig.empty, name


def test_the_facade_class_has_a_docstring():
    assert inspect.getdoc(Jammi) and "Attributes" in inspect.getdoc(Jammi)


def _commands(group: click.Group, prefix: str = "jammi") -> list[tuple[str, click.Command]]:
    found = [(prefix, group)]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix} {name}")
        else:
            found.append((f"{prefix} {name}", command))
    return found


def test_every_cli_command_and_entry_point_has_a_docstring():
    from jammi import cli as engine_cli
    from jammi_assets import cli as console

    undocumented = [name for name, command in _commands(engine_cli.cli) if not (command.help or "").strip()]
    undocumented += [f"{m.__name__}.{name}" for m in (engine_cli, console)
                     for name, f in vars(m).items()
                     if inspect.isfunction(f) and f.__module__ == m.__name__ and not name.startswith("_")
                     and not (f.__doc__ or "").strip()]
    assert undocumented == []


def test_the_component_and_its_methods_have_docstrings():
    from jammi_assets.component import JammiProject

    assert (JammiProject.__doc__ or "").strip()
    for name in ("project_file", "build_defs"):  # their own, not dg.Component's inherited ones
        assert (vars(JammiProject)[name].__doc__ or "").strip(), name
