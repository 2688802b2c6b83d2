"""How Jammi connects to the PostgreSQL that holds a project's catalog, and how it names its
advisory locks there: the catalog's own connections (jammi.tables.catalog_pg) and the locks of
files every node shares (jammi.shared.write_lock) take them from here."""

from __future__ import annotations

import hashlib
from typing import Any

CONNECT_TIMEOUT_S = 10
APPLICATION_NAME = "jammi-catalog"  # what pg_stat_activity shows for every catalog connection
# libpq TCP keepalives: a writer whose machine vanishes (no FIN ever sent) is noticed in about a
# minute, and its locks released with its connection
KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                              "keepalives_count": 3}


def connect(dsn: str) -> Any:
    """An autocommit psycopg connection to `dsn` (raises psycopg.Error; the caller names it)."""
    import psycopg

    return psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True,
                           application_name=APPLICATION_NAME, **KEEPALIVES)


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for `parts` (the schema first: projects sharing a
    database never share a lock)."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
