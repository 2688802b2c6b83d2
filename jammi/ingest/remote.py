"""Source files on object storage: a file source's `path` may be a URL (`s3://bucket/key`, a
glob such as `s3://bucket/landing/*.csv` or `s3://bucket/{date}/*.jsonl` included; `gs://` and
`az://` through pyarrow's GCS and Azure file systems where the pyarrow build has them).

Objects are read through pyarrow's file systems, with credentials from the store's usual chain
(for S3: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, instance roles), and an
S3-compatible store's address from `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`. A listed object
stands in for a local `Path` where Jammi reads source files: its name, size and modification
time tell the file sensors and the extraction memo whether it changed, without a download.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from jammi import store
from jammi.errors import SourceError
from jammi.store import SCHEMES, first_line, is_url

__all__ = ["SCHEMES", "RemoteFile", "SourceFile", "filesystem", "first_line", "glob_regex", "is_url",
           "list_files"]

if TYPE_CHECKING:
    import pyarrow.fs as pafs

GLOB_CHARS = "*?["


@dataclass(frozen=True, order=True)
class RemoteFile:
    """One object of a store, as listed: its URL, size and modification time."""

    url: str
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return self.url

    def is_file(self) -> bool:
        return True

    def stat(self) -> SimpleNamespace:
        """Size and modification time as `os.stat` names them (what the file sensors fingerprint)."""
        return SimpleNamespace(st_size=self.size, st_mtime_ns=self.mtime_ns)

    def state(self) -> str:
        """What identifies this version of the object: URL, size, modification time."""
        return f"{self.url}:{self.size}:{self.mtime_ns}"

    def open(self):
        """A seekable binary file over the object (pandas, pyarrow and io read it)."""
        fs, path = filesystem(self.url)
        try:
            return fs.open_input_file(path)
        except OSError as err:
            raise SourceError(f"cannot open {self.url}: {first_line(err)}") from None

    def read_bytes(self) -> bytes:
        with self.open() as handle:
            return handle.read()


SourceFile = Path | RemoteFile  # a local file or a listed object, read alike by the extraction


def filesystem(url: str) -> tuple[pafs.FileSystem, str]:
    """The file system of `url` and the object's path in it (`bucket/key`); a store that
    cannot be reached is a SourceError."""
    return store.filesystem(url, error=SourceError)


def glob_regex(pattern: str, capture: str | None = None) -> re.Pattern:
    """A regex over paths for a glob: `*` and `?` within one path segment, `**/` any number of
    segments, `[...]` a character class; with `capture` (e.g. "{date}"), that token matches one
    path segment, captured as group `key`."""
    out, i = [], 0
    while i < len(pattern):
        if capture and pattern.startswith(capture, i):
            out.append("(?P<key>[^/]+)")
            i += len(capture)
        elif pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def list_files(url: str) -> list[RemoteFile]:
    """The objects `url` names: the object itself, or every object its glob matches, sorted."""
    import pyarrow.fs as pafs

    fs, path = filesystem(url)
    prefix_of = f"{urlsplit(url).scheme}://"
    try:
        if not any(c in path for c in GLOB_CHARS):
            info = fs.get_file_info(path)
            return [_remote(prefix_of, info)] if info.type == pafs.FileType.File else []
        head = path[:min(path.index(c) for c in GLOB_CHARS if c in path)]
        base = head.rsplit("/", 1)[0] if "/" in head else head
        wanted = glob_regex(path)
        listed = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as err:
        raise SourceError(f"cannot list {url}: {first_line(err)}") from None
    return sorted(_remote(prefix_of, i) for i in listed
                  if i.type == pafs.FileType.File and wanted.fullmatch(i.path))


def _remote(prefix: str, info) -> RemoteFile:
    mtime = info.mtime_ns if info.mtime_ns is not None else 0
    return RemoteFile(prefix + info.path, int(info.size or 0), int(mtime))
