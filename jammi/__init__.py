"""Jammi's engine: sources to validated, fused, embedded and indexed tables, with no Dagster
in it. The Dagster layer (jammi_assets, resources, sensors) calls into this package.

`jammi.__version__` is read from the installed package's metadata when first asked for
(importlib.metadata takes tens of milliseconds to load, which `jammi search` need not pay)."""


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module 'jammi' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("jammi")
    except PackageNotFoundError:  # running from a checkout that is not installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
