"""Local files under the artifact directory: writes that are atomic (a temporary file beside
the target, then one rename), so a reader never sees half a file, frames written batch by
batch, and the leftovers of writers that died. Where shared files live (frames among them, on
a local disk or under an object-store URL) is jammi.shared's."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from jammi.errors import ArtifactError, DiskFullError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def tmp_path(path: Path) -> Path:
    """The hidden temporary file a write goes to before its rename onto `path`, named for the
    writing process (`.<name>.<pid>.tmp`), so that `jammi recover` can tell a dead writer's
    leftovers from a live one's file (`remove_leftovers`)."""
    path = Path(path)
    return path.parent / f".{path.name}.{os.getpid()}.tmp"


def tmp_files(path: Path) -> list[Path]:
    """Every writer's temporary files of `path` (what a dead builder's cleanup removes)."""
    path = Path(path)
    return [p for p in path.parent.glob(f".{glob_escape(path.name)}.*tmp*") if TMP_NAME.match(p.name)]


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


# `.<name>.<pid>.tmp`, `.<name>.<pid>-<thread>.tmp` (and DuckDB's `.wal` beside one), a frame
# writer's `.<name>.parts-<pid>-<hex>` folder, an encoder export's `.<name>.tmp-<pid>`
TMP_NAME = re.compile(r"^\..+\.(?:(?P<pid>\d+)(?:-\d+)?\.tmp(?:\.wal)?|parts-(?P<parts>\d+)-[0-9a-f]+"
                      r"|tmp-(?P<export>\d+))$")
OUT_OF_SPACE = ("no space left on device", "disk quota exceeded", "not enough space")


def disk_full(err: BaseException, path: Path | str) -> DiskFullError | None:
    """`err` as one line naming the file and the space left, when it is a write that ran out of
    space: ENOSPC or EDQUOT, an Arrow or DuckDB error saying so, or USearch's `Failed to
    serialize into stream` (which says nothing of space) on a file system with little room
    left; None for any other error."""
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    full = (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or any(
        s in str(err).lower() for s in OUT_OF_SPACE)
    free = _free_bytes(Path(path).parent)
    if not full and "failed to serialize" in detail.lower():
        full = free is not None and free < LOW_SPACE
    if not full:
        return None
    left = "" if free is None else f" ({_size(free)} free)"
    return DiskFullError(f"out of space writing {path}: the device holding it is full{left}; the partial "
                         f"file was removed; free some space and run again ({detail})")


LOW_SPACE = 64 << 20  # below this much free space, a write failure that names no cause is a full disk


@contextmanager
def named_when_full(path: Path | str | Callable[[], Path | str], cleanup: Callable[[], object] | None = None
                    ) -> Iterator[None]:
    """Run the block; an error that is a full disk (`disk_full`) runs `cleanup` and becomes
    DiskFullError naming `path` (or what `path()` names once the error happened); any other
    error passes as it is."""
    try:
        yield
    except BaseException as err:
        full = disk_full(err, path() if callable(path) else path)
        if full is None:
            raise
        if cleanup is not None:
            cleanup()
        raise full from None


def _free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value, unit = float(n), "bytes"
    for unit in ("KiB", "MiB", "GiB"):  # noqa: B007 (the unit the loop stops at is the answer)
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"


DIGEST_ALGORITHM = "sha256"  # of every file of a table version and of every frame (jammi.checksums)


def file_digest(path: Path) -> str:
    """`sha256:<hex>` of a local file's bytes (SHA-NI makes sha256 hashlib's fastest on x86)."""
    h = hashlib.new(DIGEST_ALGORITHM)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return f"{DIGEST_ALGORITHM}:{h.hexdigest()}"


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` to the temporary file of `path`, then one rename onto `path`. A write that
    fails leaves no temporary file behind, and one that ran out of space raises DiskFullError
    naming `path`; `path` itself is untouched until the rename."""
    tmp = tmp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        full = disk_full(err, path)
        if full is not None:
            raise full from None
        raise


def write_json_atomic(path: Path, payload: dict) -> None:
    text = json.dumps(payload, indent=2, default=str)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one we may not signal counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftovers(root: Path) -> list[Path]:
    """Temporary files and part folders under `root` whose writing process is dead (see
    TMP_NAME): what a write killed or failed in a way it could not clean left behind."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in [*files, *dirs]:
            match = TMP_NAME.match(name)
            if match is None:
                continue
            pid = int(match.group("pid") or match.group("parts") or match.group("export"))
            if pid != os.getpid() and not pid_alive(pid):
                found.append(Path(folder) / name)
        dirs[:] = [d for d in dirs if not TMP_NAME.match(d)]
    return sorted(found)


def remove_leftovers(root: Path) -> list[Path]:
    """Remove `leftovers(root)`; the paths removed."""
    removed = []
    for path in leftovers(root):
        try:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def ensure_writable(directory: Path, who: str) -> None:
    """Fail early, naming the source, when the artifact directory cannot take files."""
    probe = directory / f".write-probe-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ArtifactError(
            f"{who}: artifact_dir {str(directory)!r} is not writable ({err.strerror or err}); "
            "set 'artifact_dir' in jammi.yaml to a writable directory"
        ) from None


BATCH_ROWS = 65536  # rows a streamed frame is read, validated and written by at a time


class FrameWriter:
    """A frame written batch by batch, so no more than one batch is ever in memory. Batches
    stream into one Parquet file beside the target for as long as their column types agree
    (the common case: `close` is then one rename); a batch whose types differ (a column all
    null in one batch, or holding text in one and numbers in another) ends that file and
    starts part files, which `close` joins into the target, unified: numbers widen, nulls
    take the other parts' type, and anything else becomes text. A write that runs out of
    space removes what it wrote and raises DiskFullError naming the target."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.parts_dir = self.path.parent / f".{self.path.name}.parts-{os.getpid()}-{secrets.token_hex(4)}"
        self.parts: list[Path] = []  # sealed files, in order
        self.rows = 0
        self.head: pd.DataFrame | None = None  # the first rows written, for previews
        self.columns: list[str] | None = None
        self._stream = None  # pq.ParquetWriter of the file batches stream into, while open
        self._stream_path: Path | None = None
        self.digest: str | None = None  # of the finished file (`finish`)

    def write(self, frame: pd.DataFrame) -> None:
        with named_when_full(self.path, self.discard):
            self._write(frame)

    def _write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.columns is None and len(frame.columns):
            self.columns = [str(c) for c in frame.columns]
        if self.head is None or (not len(self.head) and len(frame)):
            self.head = frame.head(10)
        if not len(frame) and (self.parts or self._stream is not None):
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        if self._stream is not None and not table.schema.equals(self._stream.schema):
            self._seal()
        if self._stream is None and not self.parts:
            self._stream_path = self._next_part()
            self._stream = pq.ParquetWriter(self._stream_path, table.schema, compression="snappy")
        if self._stream is not None:
            self._stream.write_table(table)
        else:
            part = self._next_part()
            pq.write_table(table, part, compression="snappy")
            self.parts.append(part)
        self.rows += len(frame)

    def _next_part(self) -> Path:
        return self.parts_dir / f"part-{len(self.parts):06d}.parquet"

    def _seal(self) -> None:
        """End the streamed file: it becomes the first part (readable from now on)."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.close()
            self.parts.append(self._stream_path)

    def files(self) -> list[Path]:
        """The files written so far, readable (later batches go to new parts)."""
        self._seal()
        return list(self.parts)

    def close(self) -> Path:
        """Put the joined frame at `path` (an empty frame when nothing was written)."""
        self.finish()
        return self.commit()

    def finish(self) -> Path:
        """Join the parts into the temporary file beside `path`, leaving `path` as it was (so
        that a step writing several frames replaces none until all are written): `commit`
        renames it into place, `discard` removes it. Out of space raises DiskFullError."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_path(self.path)
        try:
            self._seal()
            if not self.parts:
                import pandas as pd

                pd.DataFrame().to_parquet(tmp, index=False)
            elif len(self.parts) == 1:
                os.replace(self.parts[0], tmp)
            else:
                _join_parts(self.parts, tmp)
        except BaseException as err:
            self.discard()
            full = disk_full(err, self.path)
            if full is not None:
                raise full from None
            raise
        finally:
            shutil.rmtree(self.parts_dir, ignore_errors=True)
        self.digest = file_digest(tmp)  # recorded with the frame (jammi.checksums)
        return tmp

    def commit(self) -> Path:
        """Rename the finished frame onto `path`."""
        os.replace(tmp_path(self.path), self.path)
        return self.path

    def discard(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            with contextlib.suppress(Exception):  # a full disk fails the close's flush too
                stream.close()
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        tmp_path(self.path).unlink(missing_ok=True)


@contextmanager
def committing(writers: list[FrameWriter]) -> Iterator[None]:
    """Rename the finished files of `writers` (FrameWriter.finish) into place, then run the
    block (recording them, say). If a rename or the block fails, every path gets back the file
    it held before (kept meanwhile as a hard link beside it), so a step that fails after
    writing its frames keeps its previous ones."""
    kept: list[tuple[Path, Path | None]] = []  # (path, its previous file's link or None)
    try:
        for writer in writers:
            previous = None
            if writer.path.exists():
                previous = writer.path.parent / f".{writer.path.name}.{os.getpid()}.previous.tmp"
                previous.unlink(missing_ok=True)
                try:
                    os.link(writer.path, previous)
                except OSError:  # a file system without hard links: moved aside instead
                    os.replace(writer.path, previous)
            kept.append((writer.path, previous))
            writer.commit()
        yield
    except BaseException:
        for path, previous in reversed(kept):
            if previous is not None:
                os.replace(previous, path)
            else:
                path.unlink(missing_ok=True)
        for writer in writers:
            writer.discard()
        raise
    finally:
        for _, previous in kept:
            if previous is not None:
                previous.unlink(missing_ok=True)


def _join_parts(parts: list[Path], target: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in parts]
    schema = unified_schema(schemas)
    with pq.ParquetWriter(target, schema, compression="snappy") as writer:
        for part in parts:
            pf = pq.ParquetFile(part)
            for group in range(pf.num_row_groups):
                table = pf.read_row_group(group)
                writer.write_table(pa.Table.from_arrays(
                    [_as_type(table.column(f.name), f.type) if f.name in table.column_names
                     else pa.nulls(table.num_rows, f.type) for f in schema], schema=schema))


def unified_schema(schemas: list) -> pa.Schema:
    """One schema for parts of one frame: Arrow's permissive promotion (null takes the other
    type, integers widen to floats), or, for a column whose types cannot be promoted, text.
    The first part's pandas metadata is kept, so the frame reads back with its dtypes."""
    import pyarrow as pa

    names = list(dict.fromkeys(n for s in schemas for n in s.names))
    fields = []
    for name in names:
        types = [s.field(name).type for s in schemas if name in s.names]
        known = list(dict.fromkeys(t for t in types if not pa.types.is_null(t)))
        if len(known) <= 1:
            fields.append(pa.field(name, known[0] if known else pa.null()))
            continue
        try:
            merged = pa.unify_schemas([pa.schema([pa.field(name, t)]) for t in known],
                                      promote_options="permissive").field(name).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            merged = pa.string()
        if pa.types.is_struct(merged) or pa.types.is_list(merged) or pa.types.is_large_list(merged):
            merged = pa.string()
        fields.append(pa.field(name, merged))
    return pa.schema(fields, metadata=schemas[0].metadata)


def _as_type(column: pa.ChunkedArray, to: pa.DataType) -> pa.ChunkedArray:
    import pyarrow as pa

    if column.type == to:
        return column
    try:
        return column.cast(to)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        values = [None if v is None else v if isinstance(v, str) else json.dumps(v, default=str)
                  for v in column.to_pylist()]
        return pa.chunked_array([pa.array(values, pa.string())])
