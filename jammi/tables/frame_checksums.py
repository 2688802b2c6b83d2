"""A stored frame checked against the digests recorded when it was written (jammi.checksums),
before a step embeds it or a search returns its columns. Imports no pandas: search loads it."""

from __future__ import annotations

import time
from pathlib import Path

from jammi import checksums, store
from jammi.errors import ArtifactError
from jammi.shared import is_folder, partition_files, partition_of
from jammi.store import Location
from jammi.tables.catalog import Catalog

COMMIT_WAIT_S = 3.0  # how long a frame's rename may run ahead of its catalog commit


def check_frame(artifact_dir: Path, asset: str, frame: Location, fresh: bool = False,
                digests: dict | None = None) -> None:
    """The stored frame `frame` of `asset` (its file, or every partition file of its folder)
    matches the digests recorded when it was written (jammi.checksums: hashed once per node
    unless `fresh`; `digests`: those recorded, when the caller read them already, e.g. with
    Catalog.snapshot), else raise ArtifactError naming the file and the fix. Frames written before
    checksums were recorded have none and pass; an object in a store is hashed only when
    `fresh` (the store checks each upload itself)."""
    files = partition_files(frame) if is_folder(frame) else [frame]
    if not fresh:
        files = [f for f in files if not store.is_url(f)]
    if digests is None:
        digests = Catalog(artifact_dir).frame_digests(files)
    for file in files:
        if not checksums.matches(file, digests.get(file), fresh) and not _recorded_since(artifact_dir, file):
            which = f" --partition {partition_of(file)}" if is_folder(frame) else ""
            raise ArtifactError(
                f"{file} is damaged (its bytes do not match the checksum recorded when it was written); "
                f"run `jammi materialize --select {asset}{which}` to write it again from its source "
                "(`jammi verify --repair` does that for a pipeline's input)")


def _recorded_since(artifact_dir: Path, file: Location) -> bool:
    """Whether `file` matches its recorded digest once the catalog has caught up: a step puts
    its frame in place (a rename) and records its digest a moment later, in its catalog commit
    (or puts the previous frame back when that commit fails), so a reader in between sees a
    new file beside the old digest. Asked again for up to COMMIT_WAIT_S before calling the
    file damaged."""
    deadline = time.monotonic() + COMMIT_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if checksums.matches(file, Catalog(artifact_dir).frame_digests([file]).get(file)):
            return True
    return False
