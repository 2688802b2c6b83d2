"""Where the catalog's state lives: `catalog: {postgres: DSN, schema: NAME}` in jammi.yaml puts
it in PostgreSQL (jammi.tables.catalog_pg), shared by every machine that writes the project's
tables; without it, the private DuckDB file under the artifact directory (the default).

A loaded project registers its setting here under its artifact directory, so every
`Catalog(artifact_dir)` of the process opens the same backend without each caller passing it
(jammi.tables.catalog asks `configured_catalog`). A project whose `artifact_dir` is an
object-store URL registers the URL too (`configured_tables`): its embedding tables live there,
and the artifact directory the engine is handed is this node's local folder for the project
(jammi.store.node_dir)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_SCHEMA = "jammi"
SCHEMA_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"


class PostgresCatalogSpec(BaseModel):
    """`catalog:` of jammi.yaml. `postgres`: a libpq connection string or URL (usually
    `${JAMMI_CATALOG_DSN}`, so the password stays out of the file); `schema`: the PostgreSQL
    schema holding this project's state (created on first use), one per project sharing a
    database."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    postgres: str = Field(min_length=1)
    schema_: str = Field(default=DEFAULT_SCHEMA, alias="schema", pattern=SCHEMA_PATTERN)

    @property
    def schema_name(self) -> str:
        return self.schema_


_CONFIGURED: dict[str, PostgresCatalogSpec] = {}
_TABLES: dict[str, str] = {}  # local artifact folder -> the object-store URL its tables live under
_GUARD = threading.Lock()


def _key(artifact_dir: Path | str) -> str:
    return os.path.realpath(os.fspath(artifact_dir))


def configure_catalog(artifact_dir: Path | str, spec: PostgresCatalogSpec | None,
                      tables_url: str | None = None) -> None:
    """Record (or with None forget) where the catalog of `artifact_dir` keeps its state, and
    (`tables_url`) the object-store URL its tables live under."""
    with _GUARD:
        if spec is None:
            _CONFIGURED.pop(_key(artifact_dir), None)
        else:
            _CONFIGURED[_key(artifact_dir)] = spec
        if tables_url is None:
            _TABLES.pop(_key(artifact_dir), None)
        else:
            _TABLES[_key(artifact_dir)] = tables_url.rstrip("/")


def configured_catalog(artifact_dir: Path | str) -> PostgresCatalogSpec | None:
    """The PostgreSQL catalog a loaded project declared for `artifact_dir`, else None (local)."""
    with _GUARD:
        return _CONFIGURED.get(_key(artifact_dir))


def configured_tables(artifact_dir: Path | str) -> str | None:
    """The object-store URL a loaded project's tables live under (its `artifact_dir: s3://...`),
    None when they live in `artifact_dir` itself."""
    with _GUARD:
        return _TABLES.get(_key(artifact_dir))
