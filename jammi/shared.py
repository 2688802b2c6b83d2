"""The files every node of a project shares, and where they live: under the project's
object-store URL when `artifact_dir` is one (`s3://bucket/prefix`), else in the local artifact
folder, as always. A node that shares no disk with another reads and writes them here, through
jammi.store:

- `frames/`: the asset frames (`raw_`, `validated_`, `quarantine_`, `fused_`, `chunks_`), a
  partitioned asset's folder of partition files with its `_frame.json`, the drift baselines;
- `fusion/<entity>/`: an entity's fusion state and review pairs (jammi.fusion.state);
- `state/watermarks/<source>.json`, `state/streams/<pipeline>.json`: watermarks and the stream
  worker's figures;
- `jammi_db/`: the embedding tables (jammi.tables), their catalog in PostgreSQL.

A frame is replaced whole: locally by a rename, in a store by one upload of the finished file
(spooled in this node's cache first, so no object is ever half-written); the step then records
it in the catalog. What stays in the node's own folder (`Project.artifact_dir`, for a URL
jammi.store.node_dir) is node-local by design: the published jammi.duckdb, lock files, memos,
fetched objects, model exports and the quality plot.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from jammi import pg, store
from jammi.errors import ArtifactError
from jammi.redact import dsn_display, dsn_secrets, redact
from jammi.spec.catalog import configured_catalog, configured_tables
from jammi.storage import FrameWriter, glob_escape, tmp_path
from jammi.storage import committing as committing_files
from jammi.store import Location

if TYPE_CHECKING:
    import pandas as pd

FRAMES_DIR = "frames"
FRAME_META = "_frame.json"  # beside a partitioned asset's files: its unique key
LOCKS_DIR = "locks"  # in a URL project's node folder: the locks of files that live under the URL


def shared_root(artifact_dir: Path | str) -> Location:
    """Where the shared files of the project whose (node) artifact folder is `artifact_dir`
    live: its object-store URL, or that folder itself."""
    return configured_tables(artifact_dir) or Path(artifact_dir)


def shared_path(artifact_dir: Path | str, *parts: str) -> Location:
    return store.join(shared_root(artifact_dir), *parts)


def lock_path(artifact_dir: Path | str, location: Location, name: str) -> Path:
    """This node's lock file `name` for writes of `location`: beside a local file, in the node
    folder for an object (an object store has no lock files)."""
    if not store.is_url(location):
        return Path(location).parent / name
    folder = Path(artifact_dir) / LOCKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    relative = str(store.parent_of(location)).removeprefix(str(shared_root(artifact_dir)).rstrip("/"))
    return folder / f"{quote(relative.strip('/'), safe='')}__{name}"


@contextmanager
def write_lock(artifact_dir: Path | str, location: Location, name: str, wait_s: float) -> Iterator[None]:
    """One writer of the shared file at `location` at a time (a read, a change, a write). For an
    object under a project's URL, whichever node the writer runs on: an advisory lock in the
    catalog's PostgreSQL, on a connection of its own that PostgreSQL releases with the lock if
    the holder dies. For a local file: the lock file `name` beside it. Waits up to `wait_s`, then
    raises ArtifactError naming `location`."""
    spec = configured_catalog(artifact_dir) if store.is_url(location) else None
    if spec is None:
        from filelock import FileLock, Timeout

        try:
            with FileLock(str(lock_path(artifact_dir, location, name)), timeout=wait_s):
                yield
        except Timeout:
            raise ArtifactError(f"{location}: another process has held it for over {wait_s:.0f}s") from None
        return
    import psycopg

    where = f"catalog PostgreSQL {dsn_display(spec.postgres)}"
    try:
        conn = pg.connect(spec.postgres)
    except psycopg.Error as err:
        raise ArtifactError(redact(f"{where}: cannot lock {location}: {store.first_line(err)}",
                                   dsn_secrets(spec.postgres))) from None
    key = pg.lock_key(spec.schema_name, "shared", name)
    try:
        try:
            conn.execute(f"SET lock_timeout = {int(wait_s * 1000)}")
            conn.execute("SELECT pg_advisory_lock(%s)", [key])
        except psycopg.errors.LockNotAvailable:
            raise ArtifactError(f"{location}: another process has held it for over {wait_s:.0f}s ({where})") \
                from None
        except psycopg.Error as err:
            raise ArtifactError(redact(f"{where}: cannot lock {location}: {store.first_line(err)}",
                                       dsn_secrets(spec.postgres))) from None
        yield
        # released now: a closed connection's locks go only once its server process notices
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock(%s)", [key])
    finally:
        conn.close()  # a holder that died: the session ends and PostgreSQL releases the lock with it


# --- where frames live -----------------------------------------------------------------------


def frame_path(artifact_dir: Path | str, asset_name: str) -> Location:
    """Where the frame of an asset (raw_, validated_, quarantine_, fused_...) is kept."""
    return shared_path(artifact_dir, FRAMES_DIR, f"{asset_name}.parquet")


def partition_dir(artifact_dir: Path | str, asset_name: str) -> Location:
    """The folder of a partitioned asset's partition files."""
    return shared_path(artifact_dir, FRAMES_DIR, asset_name)


def partition_path(artifact_dir: Path | str, asset_name: str, partition: str) -> Location:
    """Where one partition of a partitioned asset's frame is kept (its folder holds them all)."""
    return store.join(partition_dir(artifact_dir, asset_name), f"{quote(partition, safe='-_.:@ ')}.parquet")


def recorded_frame(root: Location, name: str, stored: str) -> Location | None:
    """The stored frame of asset `name` that the catalog recorded as `stored` (relative to the
    shared root `root`; an absolute local path from before paths were relative: by its name),
    None when it is gone."""
    if store.is_url(root):
        path = store.join(root, stored)
        return path if store.exists(path) or (is_folder(path) and store.listdir(path, "*.parquet")) else None
    local = Path(root) / (stored if not Path(stored).is_absolute() else f"{FRAMES_DIR}/{name}.parquet")
    return local if local.exists() else None


def is_folder(frame: Location) -> bool:
    """Whether a stored frame is a partitioned asset's folder (not one Parquet file)."""
    if store.is_url(frame):
        return not store.name_of(frame).endswith(".parquet")
    return Path(frame).is_dir()


def stored_frame(artifact_dir: Path | str, asset_name: str) -> Location | None:
    """What holds an asset's stored rows: its Parquet file, or the folder of its partition files
    (DuckDB reads it as `<folder>/*.parquet`, pyarrow and pandas as a dataset); None when
    nothing was stored yet."""
    single = frame_path(artifact_dir, asset_name)
    if store.exists(single):
        return single
    folder = partition_dir(artifact_dir, asset_name)
    if store.is_url(folder):
        return folder if store.listdir(folder, "*.parquet") else None
    return folder if Path(folder).is_dir() and any(Path(folder).glob("*.parquet")) else None


def partition_files(folder: Location) -> list[Location]:
    """The partition files of a partitioned asset's folder, in partition order."""
    if store.is_url(folder):
        return store.listdir(folder, "*.parquet")
    return list(sorted(Path(folder).glob("*.parquet")))


def partition_of(file: Location) -> str:
    """The partition key a partition file is named for."""
    return unquote(store.name_of(file).removesuffix(".parquet"))


def partition_key_of(folder: Location) -> str | None:
    """The unique key a partitioned asset's folder declares (None: rows are not deduplicated)."""
    found = read_json(store.join(folder, FRAME_META))
    return found.get("unique_key") if found else None


def parquet_glob(path: Location) -> str:
    """`path` as DuckDB's read_parquet takes it: a file, or every Parquet file of a folder."""
    return str(store.join(path, "*.parquet")) if is_folder(path) else str(path)


def identity(frame: Location) -> tuple | None:
    """What changes whenever a stored frame is replaced (None: there is none): a local file's
    or folder's inode, size and times; an object's size and modification time; a folder of
    objects' names, sizes and times."""
    if not store.is_url(frame):
        try:
            st = os.stat(frame)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
    if not is_folder(frame):
        found = store.state(frame)
        return tuple(found) if found is not None else None
    import pyarrow.fs as pafs

    fs, path = store.filesystem(str(frame))
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    except OSError as err:
        raise ArtifactError(f"cannot list {frame}: {store.first_line(err)}") from None
    listed = tuple(sorted((i.base_name, i.size, i.mtime_ns) for i in infos if i.type == pafs.FileType.File))
    return listed or None


# --- reading and writing shared files ----------------------------------------------------------


def read_frame(location: Location, columns: list[str] | None = None) -> pd.DataFrame:
    """The Parquet file at `location` as a pandas frame (only `columns` when given)."""
    import pandas as pd

    if not store.is_url(location):
        return pd.read_parquet(location, columns=columns)
    return store.read_parquet(location, columns).to_pandas()


def write_frame(frame: pd.DataFrame, location: Location) -> str:
    """`frame` as the Parquet file at `location`, replaced whole (a reader sees the old file or
    the new one); returns the digest of what was written."""
    return write_file(location, lambda path: frame.to_parquet(path, index=False))


def write_file(location: Location, write: Callable[[Path], object]) -> str:
    """`write(path)` makes the whole content of `location` in the local file `path`: the
    temporary file beside a local `location` (its folder made first; jammi.storage.write_atomic:
    a full disk is named), or a spool file uploaded whole (jammi.store.write_object). Returns
    the digest of what was written (jammi.checksums)."""
    if not store.is_url(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
    return store.write_object(location, write)


def read_json(location: Location) -> dict | None:
    """The JSON object at `location`; None when there is none (or it does not parse)."""
    try:
        return json.loads(store.read_text(location))
    except (OSError, ValueError):
        return None


def write_json(location: Location, payload: dict) -> None:
    write_text(location, json.dumps(payload, indent=2, default=str))


def write_text(location: Location, text: str) -> None:
    write_file(location, lambda path: Path(path).write_text(text, encoding="utf-8"))


def json_files(folder: Location) -> list[dict]:
    """Every JSON object directly in `folder`, by file name (a file that does not parse is
    left out)."""
    found = [read_json(f) for f in store.listdir(folder, "*.json")]
    return [f for f in found if f is not None]


@contextmanager
def local_file(location: Location) -> Iterator[Path]:
    """A local file holding `location` as it is now, for a run whose reads must all see one
    frame while a later run may replace it: a hard link to a local file, a download of an
    object into this node's spool folder; removed when the block ends."""
    import threading

    if not store.is_url(location):
        path = Path(location)
        link = path.with_name(f".{path.stem}.{os.getpid()}-{threading.get_ident()}.snapshot.parquet")
        link.unlink(missing_ok=True)
        os.link(path, link)
        try:
            yield link
        finally:
            link.unlink(missing_ok=True)
        return
    with store.spooled() as spool:
        _download(location, spool)
        yield spool


def _download(location: Location, path: Path) -> None:
    fs, key = store.filesystem(str(location))
    try:
        with fs.open_input_stream(key) as source, open(path, "wb") as out:
            while chunk := source.read(store.CHUNK):
                out.write(chunk)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise ArtifactError(f"cannot fetch {location}: {store.first_line(err)}") from None


def _copy_object(source: str, target: str) -> None:
    """One object copied onto another name inside the store (no download)."""
    fs, src = store.filesystem(source)
    _, dst = store.filesystem(target)
    try:
        fs.copy_file(src, dst)
    except OSError as err:
        raise ArtifactError(f"cannot copy {source} to {target}: {store.first_line(err)}") from None


# --- frames written batch by batch ---------------------------------------------------------------


class ObjectFrameWriter(FrameWriter):
    """A FrameWriter whose target is an object in a store: batches are written, and the frame
    finished, in a folder of this node's spool, and `commit` uploads the finished file whole."""

    def __init__(self, target: str):
        self.target = target
        self.spool = store.cache_dir() / "spool" / f"frame-{os.getpid()}-{secrets.token_hex(4)}"
        super().__init__(self.spool / store.name_of(target))

    def commit(self) -> Path:
        finished = tmp_path(self.path)
        store.put_file(finished, self.target)
        shutil.rmtree(self.spool, ignore_errors=True)
        return self.path

    def discard(self) -> None:
        super().discard()
        shutil.rmtree(self.spool, ignore_errors=True)


def frame_writer(target: Location) -> FrameWriter:
    """A FrameWriter for the frame at `target`, a local path or an object's URL."""
    return ObjectFrameWriter(str(target)) if store.is_url(target) else FrameWriter(Path(target))


def target_of(writer: FrameWriter) -> Location:
    return writer.target if isinstance(writer, ObjectFrameWriter) else writer.path


PREVIOUS_KEPT_S = 3600.0  # a `.previous` copy older than this was left by a writer that died


def sweep_previous(target: str) -> list[Location]:
    """Remove the copies `committing` keeps of the object `target` (`.NAME.PID.previous`)
    that writers killed mid-commit left behind: those older than PREVIOUS_KEPT_S, since a
    live writer's copy lasts the seconds of its commit (one listing; the copies removed)."""
    removed = []
    pattern = f".{glob_escape(store.name_of(target))}.*.previous"
    for found in store.listdir(store.parent_of(target), pattern):
        state = store.state(found)
        if state is not None and time.time() - state[-1] / 1e9 > PREVIOUS_KEPT_S:
            store.delete(found)
            removed.append(found)
    return removed


@contextmanager
def committing(writers: list[FrameWriter]) -> Iterator[None]:
    """Put the finished frames of `writers` (FrameWriter.finish) in place, then run the block
    (recording them, say). If that fails, every target gets back what it held before: a local
    file its hard link (jammi.storage.committing), an object the copy made of it beside it
    before the upload; so a step that fails after writing its frames keeps its previous ones."""
    objects = [w for w in writers if isinstance(w, ObjectFrameWriter)]
    with committing_files([w for w in writers if not isinstance(w, ObjectFrameWriter)]):
        kept: list[tuple[ObjectFrameWriter, str | None]] = []
        try:
            for writer in objects:
                sweep_previous(writer.target)
                previous = None
                if store.exists(writer.target):
                    previous = str(store.join(store.parent_of(writer.target),
                                              f".{store.name_of(writer.target)}.{os.getpid()}.previous"))
                    _copy_object(writer.target, previous)
                kept.append((writer, previous))
                writer.commit()
            yield
        except BaseException:
            for writer, previous in reversed(kept):
                if previous is not None:
                    _copy_object(previous, writer.target)
                else:
                    store.delete(writer.target)
            for writer in objects:
                writer.discard()
            raise
        finally:
            for _, previous in kept:
                if previous is not None:
                    store.delete(previous)
