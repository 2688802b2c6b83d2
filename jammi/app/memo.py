"""A step skipped when its inputs are exactly the ones it last ran on, and its outputs are the
ones it wrote then: a rerun with nothing new costs reading fingerprints, not rows.

A memo is a small JSON file beside the step's output, holding a fingerprint of the inputs (file
contents hashed, or, for files Jammi itself replaces atomically, their inode, size and time),
the state of each output file, and what the step reported. Anything that differs, an output
deleted or replaced included, runs the step as usual.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from jammi import store
from jammi.storage import write_json_atomic
from jammi.store import Location

CHUNK = 1 << 20


def content_digest(paths: list[Path]) -> str:
    """A hash of the files' names and bytes (a source file: anyone may rewrite it in place); of
    an object in a store, its URL, size and modification time (an object is replaced whole,
    never rewritten in place, so these change with every write, and nothing is downloaded)."""
    digest = hashlib.blake2b(digest_size=16)
    for path in paths:
        digest.update(str(path).encode() + b"\0")
        if hasattr(path, "state"):  # jammi.ingest.remote.RemoteFile
            digest.update(path.state().encode())
            continue
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def file_state(path: Location) -> list | None:
    """Identity of a file Jammi writes by rename: a new write is a new inode (of an object in a
    store: its size and modification time, jammi.store.state)."""
    if store.is_url(path):
        return store.state(path)
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def fingerprint(inputs: dict) -> str:
    return hashlib.sha1(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def memo_path(output: Location) -> Path:
    """The memo of the step that writes `output`: hidden, beside it; for an object in a store,
    in this node's cache (a memo only ever saves this node work)."""
    if store.is_url(output):
        digest = hashlib.sha256(str(output).encode()).hexdigest()[:16]
        folder = store.cache_dir() / "memos"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f".{digest}-{store.name_of(output)}.memo.json"
    output = Path(output)
    return output.parent / f".{output.name}.memo.json"


def recall(output: Location, key: str, outputs: list[Location]) -> dict | None:
    """What the step reported when it last ran on inputs `key`, if its outputs are untouched."""
    try:
        memo = json.loads(memo_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if memo.get("key") != key or memo.get("outputs") != [file_state(p) for p in outputs]:
        return None
    return memo.get("result")


def remember(output: Location, key: str, outputs: list[Location], result: dict) -> None:
    write_json_atomic(memo_path(output), {"key": key, "outputs": [file_state(p) for p in outputs],
                                          "result": result})


def forget(output: Location) -> None:
    memo_path(output).unlink(missing_ok=True)


def read(output: Location) -> dict | None:
    """A memo kept as a plain record (`write`), for a step that reuses part of its last result."""
    try:
        return json.loads(memo_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write(output: Location, payload: dict) -> None:
    write_json_atomic(memo_path(output), payload)
