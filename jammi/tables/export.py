"""`jammi catalog export PATH`: the published catalog (jammi.tables.published) as one DuckDB
file for any client: every asset output and embedding table a view, the catalog's own tables
copied. Views name their files where they live: absolute paths under a local artifact
directory, `s3://...` (or `gs://`, `az://`) URLs under an object-store one, which a client reads
with its own credentials (DuckDB's `httpfs` extension and a `CREATE SECRET`); the file holds no
credential. Exported from what the catalog holds now: the node publishes first when its file is
behind the state (a commit of another node)."""

from __future__ import annotations

import shutil
from pathlib import Path

from jammi import store
from jammi.errors import ArtifactError
from jammi.storage import write_atomic
from jammi.store import Location
from jammi.tables.catalog import Catalog
from jammi.tables.published import newest_private

ATTEMPTS = 3  # a publish beside this one may remove the file between its naming and its copy


def export_catalog(catalog: Catalog, target: Location) -> Location:
    """Copy `catalog`'s current published file to `target` (a local path, written by rename, or
    an object-store URL, uploaded whole); returns `target`."""
    if not catalog.exists():
        raise ArtifactError(f"catalog {catalog.path} does not exist yet; run `jammi materialize` first")
    for _ in range(ATTEMPTS):
        with catalog.connect(read_only=True):  # published afresh first when behind the state
            pass
        source = newest_private(catalog.path)
        if source is None:
            raise ArtifactError(f"catalog {catalog.path}: nothing has been published")
        try:
            with open(source, "rb") as src:  # held open: a publish that removes it now cannot cut the copy
                if store.is_url(target):
                    store.write_object(target, lambda tmp: _copy(src, tmp))
                else:
                    Path(target).parent.mkdir(parents=True, exist_ok=True)
                    write_atomic(Path(target), lambda tmp: _copy(src, tmp))
            return target
        except FileNotFoundError:
            continue
    raise ArtifactError(f"catalog {catalog.path}: publishes kept replacing the file; export again")


def _copy(src, tmp: Path) -> None:
    with open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
