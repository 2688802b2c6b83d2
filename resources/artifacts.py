"""The artifact store: the project's artifact directory and its catalog, handed to assets."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from jammi.tables.catalog import Catalog


class ArtifactStore(dg.ConfigurableResource):
    """Where embedding tables, frames and the catalog live."""

    artifact_dir: str

    @property
    def path(self) -> Path:
        return Path(self.artifact_dir)

    def catalog(self) -> Catalog:
        return Catalog(self.path)
