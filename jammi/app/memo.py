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

from jammi.storage import write_json_atomic

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


def file_state(path: Path) -> list | None:
    """Identity of a file Jammi writes by rename: a new write is a new inode."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def fingerprint(inputs: dict) -> str:
    return hashlib.sha1(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def memo_path(output: Path) -> Path:
    """The memo of the step that writes `output`: hidden, beside it."""
    return output.parent / f".{output.name}.memo.json"


def recall(output: Path, key: str, outputs: list[Path]) -> dict | None:
    """What the step reported when it last ran on inputs `key`, if its outputs are untouched."""
    try:
        memo = json.loads(memo_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if memo.get("key") != key or memo.get("outputs") != [file_state(p) for p in outputs]:
        return None
    return memo.get("result")


def remember(output: Path, key: str, outputs: list[Path], result: dict) -> None:
    write_json_atomic(memo_path(output), {"key": key, "outputs": [file_state(p) for p in outputs],
                                          "result": result})


def forget(output: Path) -> None:
    memo_path(output).unlink(missing_ok=True)


def read(output: Path) -> dict | None:
    """A memo kept as a plain record (`write`), for a step that reuses part of its last result."""
    try:
        return json.loads(memo_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write(output: Path, payload: dict) -> None:
    write_json_atomic(memo_path(output), payload)
