"""Checksums of the immutable files of a table version: its segments and deletion files, and
the HNSW sidecar and rowmap of each segment.

A file's digest is taken when it is written, from the local file before it is renamed (or
uploaded) into place, and recorded in the catalog with the version that names it (a
sidecar's, when the sidecar is built). A reader compares a file with its recorded digest on
first use: the result is remembered by the file's identity (path, size, inode, modification
and change times, which any write to it changes), in this process and in a small file in this
node's cache folder, so a file is hashed once per node, not once per process, and a file that
changed since is hashed again. `jammi verify` always hashes.

Digests are `sha256:<hex>`, taken by jammi.store as it writes (`write_object`, `put_file`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

from jammi import store
from jammi.errors import ArtifactError
from jammi.storage import write_json_atomic
from jammi.store import Location, file_digest

KNOWN_FILE = "verified.json"
KNOWN_LIMIT = 4_000  # identities remembered on disk (the oldest are forgotten first)

_lock = threading.Lock()
_known: dict[str, str] | None = None  # identity -> digest, as this node saw the file


def _identity(path: Path) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_ino}|{st.st_mtime_ns}|{st.st_ctime_ns}"


def _known_path() -> Path:
    return store.cache_dir() / KNOWN_FILE


def _load() -> dict[str, str]:
    global _known
    if _known is None:
        try:
            loaded = json.loads(_known_path().read_text(encoding="utf-8"))
            _known = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            _known = {}  # none yet, or damaged: it is only a cache
    return _known


def _save(identity: str, digest: str) -> None:
    """Remember `identity` on disk as well: merged with what other processes wrote there, then
    one rename (a lost race only costs a second hash of the file, never a wrong answer)."""
    target = _known_path()
    try:
        on_disk = json.loads(target.read_text(encoding="utf-8"))
        if not isinstance(on_disk, dict):
            on_disk = {}
    except (OSError, ValueError):
        on_disk = {}
    on_disk.pop(identity, None)
    on_disk[identity] = digest  # newest last: the oldest are dropped first
    while len(on_disk) > KNOWN_LIMIT:
        on_disk.pop(next(iter(on_disk)))
    # a read-only or full cache folder: this process still remembers it
    with contextlib.suppress(OSError, ArtifactError):
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(target, on_disk)


def remember(path: Path, digest: str) -> None:
    """`path` (a local file) is known to hold `digest`: say so after writing it, so its first
    reader does not hash it again."""
    identity = _identity(path)
    if identity is None:
        return
    with _lock:
        known = _load()
        if known.get(identity) == digest:
            return
        known[identity] = digest
        _save(identity, digest)


def digest_of(location: Location, fresh: bool = False) -> str:
    """The digest of the file at `location` (a path, or a URL read through this node's cached
    copy): the remembered one when the file is unchanged since it was last hashed, unless
    `fresh`. Raises FileNotFoundError when it is missing."""
    local = store.local_copy(location)
    identity = _identity(local)
    if identity is None:
        raise FileNotFoundError(str(location))
    if not fresh:
        with _lock:
            found = _load().get(identity)
        if found is not None:
            return found
    digest = file_digest(local)
    if _identity(local) == identity:  # not rewritten while it was read
        with _lock:
            _load()[identity] = digest
            _save(identity, digest)
    return digest


def matches(location: Location, expected: str | None, fresh: bool = False) -> bool:
    """Whether the file at `location` holds the bytes its recorded digest `expected` says (True
    when none was recorded: files written before checksums were)."""
    return expected is None or digest_of(location, fresh) == expected


def forget() -> None:
    """Drop this process's memory of hashed files (tests; the file on disk stays)."""
    global _known
    with _lock:
        _known = None


def written(location: Location, digest: str) -> None:
    """`location` was just written with `digest` (store.write_object / put_file): a local file's
    first reader need not hash it again. (An object's local copy is hashed when fetched.)"""
    if not store.is_url(location):
        remember(Path(location), digest)
