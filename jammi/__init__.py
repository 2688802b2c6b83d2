"""Jammi's engine: sources to validated, fused, embedded and indexed tables, with no Dagster
in it. The Dagster layer (jammi_assets, resources, sensors) calls into this package."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jammi")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"
