"""Jammi's engine: sources to validated, fused, embedded and indexed tables, with no Dagster
in it. The Dagster layer (jammi_assets, resources, sensors) calls into this package.

The public Python API is `jammi.Jammi` (jammi.app.facade):

    from jammi import Jammi

    Jammi("jammi.yaml").search("products", "waterproof jacket", k=5)

Both `jammi.Jammi` and `jammi.__version__` are loaded when first asked for, so `import jammi`
stays cheap: the facade brings DuckDB and Arrow, and importlib.metadata takes tens of
milliseconds to load, which `jammi search` need not pay."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jammi.app.facade import Jammi

__all__ = ["Jammi", "__version__"]


def __getattr__(name: str) -> object:
    if name == "Jammi":
        from jammi.app.facade import Jammi

        globals()["Jammi"] = Jammi
        return Jammi
    if name != "__version__":
        raise AttributeError(f"module 'jammi' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("jammi")
    except PackageNotFoundError:  # running from a checkout that is not installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
