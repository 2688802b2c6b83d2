"""The files of a file source as its sensor watches them: the whole source under one key (""),
one group per `{date}` partition (key = the path segment, which is the partition key that
jammi.ingest.partitions substitutes back), or one per file (`dynamic: files`, key = the file
name, which jammi.ingest.partitions looks up). A fingerprint of a group's names, sizes and mtimes
says whether it changed."""

from __future__ import annotations

import hashlib

from jammi.errors import SourceError
from jammi.ingest.extract import source_files
from jammi.ingest.remote import SourceFile, glob_regex, is_url
from jammi.spec.automation import PATH_SEGMENT, partition_window
from jammi.spec.project import Project

WHOLE_SOURCE = ""


def landed_files(project: Project, name: str) -> dict[str, list[SourceFile]]:
    """Key -> the files of that group (empty when the source matches no file)."""
    spec = project.sources[name]
    part = spec.partitions
    if part is not None and part.by_path:
        globbed = spec.model_copy(update={"path": spec.path.replace(PATH_SEGMENT, "*")})
        matched = _files(project, name, globbed)
        where = spec.path if is_url(spec.path) else str(project.resolve(spec.path))
        segment = glob_regex(where, PATH_SEGMENT)
        groups: dict[str, list[SourceFile]] = {}
        for f in matched:
            found = segment.fullmatch(str(f))
            if found is None or not _is_key(part, found.group("key")):
                continue
            groups.setdefault(found.group("key"), []).append(f)
        return groups
    files = _files(project, name, spec)
    if part is not None and part.dynamic == "files":
        groups = {}
        for f in files:
            groups.setdefault(f.name, []).append(f)
        return groups
    return {WHOLE_SOURCE: files} if files else {}


def fingerprint(files: list[SourceFile]) -> str:
    """Names, sizes and modification times; '' for a file that vanished meanwhile."""
    h = hashlib.sha1()
    for f in sorted(files):
        try:
            st = f.stat()
        except OSError:
            continue
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _files(project: Project, name: str, spec) -> list[SourceFile]:
    try:
        return source_files(project, name, spec)
    except SourceError:
        return []


def _is_key(part, value: str) -> bool:
    try:
        partition_window(part, value)
    except ValueError:
        return False
    return True
