"""Versions of an embedding table: which Parquet segments hold its rows and which of their
rows later versions deleted.

A table (one generation) starts as version 0, its one segment `<table>.parquet`. A refresh
commits version N as one new segment `<table>.vNNNNN-<token>.parquet` holding the added and
changed rows, plus a deletion file `<table>.vNNNNN-<token>.deletes.parquet` naming, by
(`_segment`, `_row_id`), the rows of earlier segments that were changed or deleted. So a
version costs O(changed rows) to commit, every file stays plain Parquet, and the current rows
are the rows of the version's segments minus its deletions (what the catalog view shows).
Compaction writes the current rows into one segment with no deletions, as a version too.

Files are named by a random token as well as the version number, so a refresh killed before
its commit leaves only files no version names; the next run writes new ones.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

from jammi import checksums, store
from jammi.errors import ArtifactError
from jammi.store import Location

SEGMENT_COLUMN = "_segment"
DELETES_SCHEMA = pa.schema([pa.field(SEGMENT_COLUMN, pa.string(), nullable=False),
                            pa.field("_row_id", pa.string(), nullable=False)])

OUTCOME_REBUILT = "rebuilt"
OUTCOME_REFRESHED = "refreshed"
OUTCOME_NO_CHANGE = "no_change"
OUTCOME_COMPACTED = "compacted"
OUTCOME_ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class FileRef:
    """A Parquet file of a version, by name in the tables directory, with its row count and the
    digest of its bytes taken when it was written (jammi.checksums; None for files written
    before checksums were recorded)."""

    file: str
    rows: int
    digest: str | None = None

    def to_json(self) -> dict:
        out: dict = {"file": self.file, "rows": self.rows}
        if self.digest is not None:
            out["digest"] = self.digest
        return out

    @classmethod
    def from_json(cls, d: dict) -> FileRef:
        return cls(d["file"], int(d["rows"]), d.get("digest"))


@dataclass(frozen=True)
class Counts:
    """What one refresh did."""

    added: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0
    rows_encoded: int = 0
    outcome: str = OUTCOME_REBUILT
    seconds: float = 0.0
    # a provider pipeline's requests, tokens and cost (jammi.embedding.providers.usage); None in process
    usage: dict | None = None

    def as_dict(self) -> dict:
        return {"added": self.added, "changed": self.changed, "deleted": self.deleted,
                "unchanged": self.unchanged, "rows_encoded": self.rows_encoded, "outcome": self.outcome}


@dataclass(frozen=True)
class Version:
    table_name: str
    version: int
    segments: tuple[FileRef, ...]
    deletes: tuple[FileRef, ...] = ()
    rows: int = 0  # current rows: segment rows minus deleted rows
    counts: Counts = field(default_factory=Counts)
    committed_at: datetime | None = None
    # (sidecar file name, digest) of its segments' sidecars, as recorded when they were built
    sidecars: tuple[tuple[str, str], ...] = ()

    @property
    def sidecar_digests(self) -> dict[str, str]:
        return dict(self.sidecars)

    @property
    def deleted_rows(self) -> int:
        return sum(d.rows for d in self.deletes)


def version_stem(table_name: str, version: int) -> str:
    """`<table>.vNNNNN-<token>`: a new, unique base name for version `version`'s files."""
    return f"{table_name}.v{version:05d}-{secrets.token_hex(4)}"


def deletes_name(stem: str) -> str:
    return f"{stem}.deletes.parquet"


def segment_files(version: Version) -> list[str]:
    return [s.file for s in version.segments]


def paths(tables_dir: Location, refs: tuple[FileRef, ...] | list[FileRef]) -> list[Location]:
    """Where the files `refs` name are: paths in a local tables folder, URLs in an object store's."""
    return [store.join(tables_dir, r.file) for r in refs]


class DamagedFile(ArtifactError):
    """A file of a table version that cannot be read as written (flipped bytes, cut short)."""

    def __init__(self, path: Location, err: BaseException, pipeline: str | None = None):
        self.path, self.cause, self.pipeline = path, err, pipeline
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        which = f" {pipeline}" if pipeline else ""
        super().__init__(
            f"{path} is damaged ({detail}); run `jammi verify{which} --repair` (it rolls the table back "
            f"to its newest intact version and refreshes forward), or `jammi tables rollback "
            f"{pipeline or '<pipeline>'} --version N` to an earlier version, or `jammi materialize"
            f"{f' --select {pipeline}' if pipeline else ''} --full` to rebuild")

    @property
    def name(self) -> str:
        """The damaged file's name in its tables folder."""
        return store.name_of(self.path)


class ChecksumMismatch(Exception):
    """A file's bytes differ from the digest recorded when it was written."""

    def __str__(self) -> str:
        return "its bytes do not match the checksum recorded when it was written"


def intact(tables_dir: Location, ref: FileRef, fresh: bool = False, pipeline: str | None = None) -> Location:
    """The location of version file `ref`, once its bytes match the digest recorded for it
    (jammi.checksums: hashed once per node unless `fresh`). A mismatch raises DamagedFile.
    An object in an object store is hashed only when `fresh` (`jammi verify`): the store checks
    each upload's integrity itself, and hashing would mean fetching the whole object."""
    path = store.join(tables_dir, ref.file)
    if store.is_url(path) and not fresh:
        return path
    if not checksums.matches(path, ref.digest, fresh):
        raise DamagedFile(path, ChecksumMismatch(), pipeline)
    return path


def read_file(path: Location, columns: list[str] | None = None) -> pa.Table:
    """A version file read whole (its `columns`): a damaged one raises DamagedFile naming it (a
    missing file, or an object store that failed to answer, raises as it did)."""
    try:
        return store.read_parquet(path, columns=columns)
    except (FileNotFoundError, ArtifactError):
        raise
    except (OSError, pa.ArrowException) as err:
        raise DamagedFile(path, err) from None


def read_ref(tables_dir: Location, ref: FileRef, columns: list[str] | None = None) -> pa.Table:
    """Version file `ref` read whole (its `columns`), after its checksum (read_file, intact)."""
    return read_file(intact(tables_dir, ref), columns)


def check_files(tables_dir: Location, version: Version, pipeline: str, fresh: bool = False) -> None:
    """Every file the version names exists, matches the checksum recorded for it (hashed again
    when `fresh`, else once per node: jammi.checksums), its footer reads and it has the row
    count recorded for it; deletion files (small) are read whole. A damaged file raises
    DamagedFile."""
    for ref in (*version.segments, *version.deletes):
        path = store.join(tables_dir, ref.file)
        try:
            intact(tables_dir, ref, fresh, pipeline)
            rows = store.parquet_file(path).metadata.num_rows
            if ref in version.deletes:
                rows = store.read_parquet(path).num_rows
        except DamagedFile:
            raise
        except FileNotFoundError:
            raise ArtifactError(
                f"pipeline {pipeline!r}: {version.table_name} version {version.version} needs "
                f"{ref.file}, which is missing; the version keeps serving what it can; run "
                f"`jammi verify {pipeline} --repair`, or `jammi materialize --select {pipeline} --full` "
                "to rebuild") from None
        except ArtifactError as err:  # the store did not answer: nothing is known to be wrong with the file
            raise ArtifactError(
                f"pipeline {pipeline!r}: {version.table_name} version {version.version} needs "
                f"{ref.file}, which could not be read: {err}; nothing was changed: try again once "
                "the store answers") from None
        except (OSError, pa.ArrowException) as err:
            raise DamagedFile(path, err, pipeline) from None
        if rows != ref.rows:
            raise ArtifactError(
                f"pipeline {pipeline!r}: {ref.file} has {rows} rows, version {version.version} of "
                f"{version.table_name} recorded {ref.rows} (edited by hand?); run `jammi verify "
                f"{pipeline} --repair`, or `jammi materialize --select {pipeline} --full`")


def write_deletes(path: Location, pairs: list[tuple[str, str]]) -> FileRef:
    """The (segment, row id) pairs a version deletes, as Parquet, written whole or not at all."""
    table = pa.table({SEGMENT_COLUMN: [s for s, _ in pairs], "_row_id": [r for _, r in pairs]},
                     schema=DELETES_SCHEMA)
    digest = store.write_object(path, lambda tmp: pq.write_table(table, tmp))
    checksums.written(path, digest)
    return FileRef(store.name_of(path), len(pairs), digest)


def deleted_by_segment(tables_dir: Location, version: Version) -> dict[str, set[str]]:
    """Segment name -> row ids the version has deleted from it."""
    out: dict[str, set[str]] = defaultdict(set)
    for ref in version.deletes:
        table = read_ref(tables_dir, ref)
        for seg, row in zip(table.column(SEGMENT_COLUMN).to_pylist(), table.column("_row_id").to_pylist(),
                            strict=True):
            out[seg].add(row)
    return out


def read_current(tables_dir: Location, version: Version, columns: list[str] | None = None,
                 row_ids: list[str] | None = None) -> pa.Table:
    """The version's current rows (with `_segment`), optionally only `columns` and `row_ids`."""
    import pyarrow.compute as pc  # here: a search through the index never needs it

    deleted = deleted_by_segment(tables_dir, version)
    wanted = None if columns is None else list(dict.fromkeys(["_row_id", *columns]))
    parts = []
    for ref in version.segments:
        table = read_ref(tables_dir, ref, columns=wanted)
        gone = deleted.get(ref.file)
        if gone:
            table = table.filter(pc.invert(pc.is_in(table["_row_id"], pa.array(sorted(gone), pa.string()))))
        if row_ids is not None:
            table = table.filter(pc.is_in(table["_row_id"], pa.array(row_ids, pa.string())))
        parts.append(table.append_column(SEGMENT_COLUMN, pa.array([ref.file] * table.num_rows, pa.string())))
    if not parts:
        raise ArtifactError(f"{version.table_name} version {version.version} has no segments")
    return pa.concat_tables(parts)


def _sql_list(items: list[Location]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in items) + "]"


def view_sql(tables_dir: Location, version: Version) -> str:
    """SELECT of the version's current rows (the contract columns), for a DuckDB view (one
    over URLs reads them through the file system jammi.store.register_duckdb registers)."""
    segments = _sql_list(paths(tables_dir, version.segments))
    if not version.deletes:
        return f"SELECT * FROM read_parquet({segments})"
    deletes = _sql_list(paths(tables_dir, version.deletes))
    return (f"SELECT t.* EXCLUDE (filename) FROM read_parquet({segments}, filename = true) t "
            f"ANTI JOIN read_parquet({deletes}) d "
            f"ON parse_filename(t.filename) = d.{SEGMENT_COLUMN} AND t._row_id = d._row_id")
