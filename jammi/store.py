"""The one way to files: a location is a local path or an object-store URL (`s3://bucket/key`;
`gs://` and `az://` through pyarrow's GCS and Azure file systems where the pyarrow build has
them), and the engine reads, writes, lists and deletes through the functions here whichever it
is. Local paths behave exactly as before (jammi.storage's atomic writes); URLs go through
`pyarrow.fs`, with credentials from the store's usual chain (for S3: `AWS_ACCESS_KEY_ID` /
`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, instance roles; for GCS: Google's default credentials;
for Azure: its default credential chain) and an S3-compatible store's address from
`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, a GCS emulator's (or other GCS endpoint's) from
`STORAGE_EMULATOR_HOST` (Google's client libraries' convention; anonymous then).

An object store has no rename, so a write here makes one immutable, uniquely named object:
`write_object` spools what the caller writes to a local file and uploads it only once it is
whole, so an object never exists half-written; the caller's commit (a catalog transaction)
is what names it. A library that needs a local file (USearch memory-maps its sidecars) gets
one from `local_copy`: fetched on first use into a bounded cache keyed by the object's URL,
size and modification time, and read from there afterwards. `register_duckdb` lets a DuckDB
connection read the URLs (`read_parquet('s3://...')`) through the same file systems.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import quote, urlsplit

from jammi.errors import ArtifactError, JammiError
from jammi.redact import redact
from jammi.storage import DIGEST_ALGORITHM, file_digest, tmp_path, write_atomic

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    import pyarrow.fs as pafs

Location = str | os.PathLike  # a local path or an object-store URL

SCHEMES = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "az": "abfs", "abfs": "abfs", "abfss": "abfs"}
GCS_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"  # `http://127.0.0.1:9023`: that GCS endpoint, anonymously
GCS_RETRY_ENV = "JAMMI_GCS_RETRY_S"  # how long GCS calls retry a store that does not answer
DEFAULT_GCS_RETRY_S = 60  # Google's client alone retries for 15 minutes
AZURE_ACCOUNT_ENV = "AZURE_STORAGE_ACCOUNT_NAME"
ENV_KEYS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", GCS_EMULATOR_ENV,
            GCS_RETRY_ENV, "GOOGLE_APPLICATION_CREDENTIALS", AZURE_ACCOUNT_ENV)
CACHE_ENV = "JAMMI_CACHE_DIR"  # where fetched sidecars and URL projects' node folders live
CACHE_BYTES_ENV = "JAMMI_CACHE_BYTES"  # the bound of the fetched-object cache
DEFAULT_CACHE_BYTES = 4 << 30
CHUNK = 8 << 20  # bytes copied at a time between a spool file and a store


# --- telling URLs from paths, and the file system of a URL ----------------------------------


def is_url(location: Location | None) -> bool:
    """Whether `location` names an object store (`s3://`, `gs://`, `az://`), not a local file."""
    return isinstance(location, str) and "://" in location and urlsplit(location).scheme.lower() in SCHEMES


def first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _s3_options() -> dict:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict = {"region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                     or "us-east-1"}
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parts.netloc + parts.path.rstrip("/"), scheme=parts.scheme)
    return options


def _gcs_options() -> dict:
    """GcsFileSystem's options: a bounded retry (`JAMMI_GCS_RETRY_S`), and with
    `STORAGE_EMULATOR_HOST` set, that endpoint (`host:port` is plain http, as in Google's
    clients) with anonymous credentials; otherwise Google's default credentials."""
    from datetime import timedelta

    raw = os.environ.get(GCS_RETRY_ENV) or str(DEFAULT_GCS_RETRY_S)
    try:
        retry = float(raw)
    except ValueError:
        raise ValueError(f"{GCS_RETRY_ENV}={raw!r} is not a number of seconds") from None
    options: dict = {"retry_time_limit": timedelta(seconds=retry)}
    emulator = os.environ.get(GCS_EMULATOR_ENV)
    if emulator:
        parts = urlsplit(emulator if "://" in emulator else f"http://{emulator}")
        options.update(anonymous=True, endpoint_override=parts.netloc, scheme=parts.scheme)
    return options


def azure_account(authority: str) -> str:
    """The storage account an `az://` URL's authority names (`container@account.dfs.core.windows.net`),
    else `AZURE_STORAGE_ACCOUNT_NAME` (for `az://container/...`)."""
    account = (authority.split("@", 1)[1].split(".")[0] if "@" in authority
               else os.environ.get(AZURE_ACCOUNT_ENV, ""))
    if not account:
        raise ValueError(f"no storage account: write az://{authority or 'CONTAINER'}@ACCOUNT"
                         f".dfs.core.windows.net/... or set {AZURE_ACCOUNT_ENV}")
    return account


@functools.lru_cache(maxsize=16)
def _filesystem(scheme: str, authority: str, env: tuple) -> pafs.FileSystem:
    import pyarrow as pa
    import pyarrow.fs as pafs

    if scheme == "s3":
        return pafs.S3FileSystem(**_s3_options())
    if scheme == "gcs":
        return pafs.GcsFileSystem(**_gcs_options())
    if not hasattr(pafs, "AzureFileSystem"):
        raise ValueError("az:// needs a pyarrow built with Azure support")
    fs = pafs.AzureFileSystem(account_name=azure_account(authority))
    # The Azure client meets a credential it cannot get only at its first call; pyarrow 26
    # aborts the whole process on it when that call opens a file or looks up a container, and
    # raises a bare ArrowException (no OSError) when it looks up an object. So the client's
    # first call is this look-up of an object, and its failure is this store's error.
    try:
        fs.get_file_info(f"{authority.split('@')[0]}/.jammi-probe")
    except pa.ArrowException as err:
        raise OSError(first_line(err)) from None
    return fs


def filesystem(url: str, error: type[JammiError] = ArtifactError) -> tuple[pafs.FileSystem, str]:
    """The file system of `url` and the object's path in it (`bucket/key`); `error` is what a
    store that cannot be reached raises (it names the store, never a credential)."""
    parts = urlsplit(url)
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise error(f"{url!r} is not an object-store URL (s3://, gs://, az://)")
    env = tuple(os.environ.get(k) for k in ENV_KEYS)  # a changed setting or credential: a new client
    try:
        fs = _filesystem(scheme, parts.netloc, env)
    except (OSError, ValueError) as err:
        raise error(f"cannot reach {parts.scheme}://{parts.netloc}: {first_line(err)}") from None
    container = parts.netloc.split("@")[0] if scheme == "abfs" else parts.netloc
    return fs, f"{container}/{parts.path.lstrip('/')}".rstrip("/")


# --- names ----------------------------------------------------------------------------------


def join(location: Location, *parts: str) -> Location:
    """`location` / parts: a Path for a local folder, a URL string for an object store."""
    if is_url(location):
        return "/".join([str(location).rstrip("/"), *(p.strip("/") for p in parts)])
    return Path(location).joinpath(*parts)


def name_of(location: Location) -> str:
    """The last component of a path or URL (a file's or object's name)."""
    return str(location).rstrip("/").rsplit("/", 1)[-1] if is_url(location) else Path(location).name


def parent_of(location: Location) -> Location:
    return str(location).rstrip("/").rsplit("/", 1)[0] if is_url(location) else Path(location).parent


def _fail(location: Location, doing: str, err: BaseException) -> ArtifactError:
    return ArtifactError(redact(f"cannot {doing} {location}: {first_line(err)}"))


# --- reading --------------------------------------------------------------------------------


def open_read(location: Location) -> IO[bytes]:
    """A seekable binary file over `location` (what Parquet footers and pyarrow need)."""
    if not is_url(location):
        return open(location, "rb")  # noqa: SIM115 (the caller closes it)
    fs, path = filesystem(str(location))
    try:
        return fs.open_input_file(path)  # type: ignore[return-value]
    except FileNotFoundError:
        raise
    except OSError as err:
        raise _fail(location, "open", err) from None


def read_bytes(location: Location) -> bytes:
    with open_read(location) as handle:
        return handle.read()


def read_text(location: Location) -> str:
    return read_bytes(location).decode("utf-8")


def parquet_file(location: Location):
    """A pyarrow ParquetFile over `location` (its footer read, row groups read on demand)."""
    import pyarrow.parquet as pq

    if not is_url(location):
        return pq.ParquetFile(location)
    return pq.ParquetFile(open_read(location))


def read_parquet(location: Location, columns: list[str] | None = None):
    """The Parquet file at `location` as an Arrow table (only `columns` when given)."""
    import pyarrow.parquet as pq

    if not is_url(location):
        return pq.read_table(location, columns=columns)
    fs, path = filesystem(str(location))
    try:
        return pq.read_table(path, columns=columns, filesystem=fs)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise _fail(location, "read", err) from None


def _info(location: Location):
    fs, path = filesystem(str(location))
    try:
        return fs.get_file_info(path)
    except OSError as err:
        raise _fail(location, "look up", err) from None


def state(location: Location) -> list | None:
    """What identifies this version of a file (None: there is none): a local file's inode, size
    and modification time (Jammi replaces files by rename, so a new write is a new inode); an
    object's size and modification time (an object is replaced whole, never in place)."""
    if not is_url(location):
        try:
            st = os.stat(location)
        except OSError:
            return None
        return [st.st_ino, st.st_size, st.st_mtime_ns]
    import pyarrow.fs as pafs

    info = _info(location)
    return [int(info.size or 0), int(info.mtime_ns or 0)] if info.type == pafs.FileType.File else None


def exists(location: Location) -> bool:
    if not is_url(location):
        return Path(location).exists()
    import pyarrow.fs as pafs

    return _info(location).type == pafs.FileType.File


def size(location: Location) -> int | None:
    """The object's size in bytes, None when there is none."""
    if not is_url(location):
        try:
            return Path(location).stat().st_size
        except FileNotFoundError:
            return None
    import pyarrow.fs as pafs

    info = _info(location)
    return int(info.size or 0) if info.type == pafs.FileType.File else None


def listdir(folder: Location, pattern: str = "*") -> list[Location]:
    """The files directly in `folder` whose names match the glob `pattern`, sorted by name
    (none when the folder does not exist)."""
    if not is_url(folder):
        base = Path(folder)
        return list(sorted(p for p in base.glob(pattern) if p.is_file())) if base.is_dir() else []
    import pyarrow.fs as pafs

    fs, path = filesystem(str(folder))
    try:
        found = fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    except OSError as err:
        raise _fail(folder, "list", err) from None
    names = sorted(i.base_name for i in found if i.type == pafs.FileType.File)
    return [join(folder, n) for n in names if fnmatch.fnmatchcase(n, pattern)]


# --- writing and deleting -------------------------------------------------------------------


def write_object(location: Location, write: Callable[[Path], object]) -> str:
    """`write(path)` makes the whole content of `location` in the local file `path`. For a
    local `location`, that is the hidden temporary file beside it, renamed onto it afterwards
    (a reader sees the old file or the new one; jammi.storage.write_atomic); for an object
    store, a local spool file, uploaded only once `write` returned, so no half-written object
    ever exists. A failed `write` leaves nothing behind either way. Returns the digest of what
    was written (jammi.checksums), taken from the local file before it was put in place."""
    if not is_url(location):
        digest = ""

        def written(tmp: Path) -> None:
            nonlocal digest
            write(tmp)
            digest = file_digest(tmp)

        write_atomic(Path(location), written)  # out of space: DiskFullError naming the file
        return digest
    with spooled() as spool:
        write(spool)
        return put_file(spool, location)


def write_bytes(location: Location, data: bytes) -> None:
    write_object(location, lambda path: Path(path).write_bytes(data))


def write_text(location: Location, text: str) -> None:
    write_bytes(location, text.encode("utf-8"))


def put_file(local: Path, location: Location) -> str:
    """Make `location` hold the finished local file `local` (moved when `location` is local,
    uploaded when it is a URL; `local` is left for the caller to remove then). Returns the
    digest of its bytes (jammi.checksums), taken as they are read for the upload, or before the
    rename."""
    if not is_url(location):
        digest = file_digest(local)
        os.replace(local, location)
        return digest
    fs, path = filesystem(str(location))
    h = hashlib.new(DIGEST_ALGORITHM)
    try:
        with open(local, "rb") as source, fs.open_output_stream(path) as out:
            while chunk := source.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
    except OSError as err:
        raise _fail(location, "write", err) from None
    return f"{DIGEST_ALGORITHM}:{h.hexdigest()}"


def delete(location: Location) -> bool:
    """Remove the file or object; whether there was one."""
    if not is_url(location):
        try:
            Path(location).unlink()
        except FileNotFoundError:
            return False
        return True
    fs, path = filesystem(str(location))
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        if "not found" in str(err).lower() or "nosuchkey" in str(err).lower():
            return False
        raise _fail(location, "delete", err) from None
    return True


def make_dirs(folder: Location) -> None:
    """Create a local folder (an object store has no folders: nothing to do)."""
    if not is_url(folder):
        Path(folder).mkdir(parents=True, exist_ok=True)


# --- the local cache: spool files, fetched objects, URL projects' node folders ---------------


def cache_dir() -> Path:
    """This node's cache folder: `JAMMI_CACHE_DIR`, else `~/.cache/jammi`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "jammi")


def cache_limit() -> int:
    try:
        return int(os.environ.get(CACHE_BYTES_ENV) or DEFAULT_CACHE_BYTES)
    except ValueError:
        raise ArtifactError(f"{CACHE_BYTES_ENV}={os.environ[CACHE_BYTES_ENV]!r} is not a number of bytes") \
            from None


def spool_path() -> Path:
    """A fresh (empty) local file under the cache's spool folder; the caller removes it."""
    folder = cache_dir() / "spool"
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=folder, prefix=f".spool.{os.getpid()}.", suffix=".tmp")
    os.close(handle)
    return Path(name)


class spooled:
    """A fresh local file path under the cache's spool folder, removed when the block ends."""

    def __enter__(self) -> Path:
        self.path = spool_path()
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def node_dir(url: str) -> Path:
    """The local folder this node keeps for a project whose artifact_dir is `url`: its
    published jammi.duckdb and its lock files (never shared with another node)."""
    readable = quote(url.split("://", 1)[-1].strip("/"), safe="").replace("%2F", "__")[:80]
    digest = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:12]
    return cache_dir() / "nodes" / f"{readable}-{digest}"


_FETCH_GUARD = threading.Lock()


def local_copy(location: Location) -> Path:
    """A local file holding `location`'s bytes: the path itself when local; for a URL, the
    copy in the fetched-object cache (`<cache>/objects`), fetched on first use. The copy is
    keyed by the URL, size and modification time, so an object replaced under the same name
    is fetched again; the cache is trimmed to `JAMMI_CACHE_BYTES` (least recently used first,
    never the copy just asked for)."""
    if not is_url(location):
        return Path(location)
    import pyarrow.fs as pafs

    info = _info(location)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"no object {location}")
    key = hashlib.sha256(f"{location}\0{info.size}\0{info.mtime_ns}".encode()).hexdigest()[:24]
    folder = cache_dir() / "objects"
    copy = folder / f"{key}-{name_of(location)}"
    if copy.exists():
        os.utime(copy)  # recently used
        return copy
    folder.mkdir(parents=True, exist_ok=True)
    fs, path = filesystem(str(location))
    tmp = tmp_path(copy)
    try:
        with fs.open_input_stream(path) as source, open(tmp, "wb") as out:
            while chunk := source.read(CHUNK):
                out.write(chunk)
        os.replace(tmp, copy)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _fail(location, "fetch", err) from None
    with _FETCH_GUARD:
        trim_cache(folder, cache_limit(), keep=copy)
    return copy


def trim_cache(folder: Path, limit: int, keep: Path | None = None) -> list[Path]:
    """Remove the least recently used files of `folder` until it holds at most `limit` bytes
    (`keep` stays whatever its size); the files removed. A copy another process has mapped
    stays readable to it: removing a name does not take the pages away."""
    files = []
    for p in folder.iterdir():
        if p.name.startswith("."):
            continue
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        files.append((st.st_mtime_ns, st.st_size, p))
    total = sum(s for _, s, _ in files)
    removed = []
    for _, bytes_, p in sorted(files):
        if total <= limit:
            break
        if keep is not None and p == keep:
            continue
        p.unlink(missing_ok=True)
        total -= bytes_
        removed.append(p)
    return removed


# --- DuckDB ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _duckdb_filesystem(scheme: str, env: tuple):
    """An fsspec file system over pyarrow's for `scheme` (what DuckDB's Python client reads)."""
    from fsspec.implementations.arrow import ArrowFSWrapper

    class StoreFS(ArrowFSWrapper):
        cachable = False

        @property
        def protocol(self):  # the URL scheme DuckDB hands to this file system
            return scheme

        def _open(self, path, mode="rb", *args, **kwargs):
            if mode != "rb":
                return super()._open(path, mode, *args, **kwargs)
            return PositionalReader(self.fs.open_input_file(path))

    fs, _ = filesystem(f"{scheme}://probe/")
    return StoreFS(fs)


class PositionalReader:
    """A read-only object-store file that DuckDB's threads may share: DuckDB reads a file at a
    position as `seek(p)` then `read(n)` on one handle from several threads at once, and a
    handle's single position (fsspec's `ArrowFile`) lets one thread's seek move another's read
    (Parquet footers then fail to decode). Here the position is each thread's own and every
    read is a positional `read_at`, which pyarrow's object-store files serve concurrently."""

    def __init__(self, source: pa.NativeFile):
        self._source = source
        self._size = source.size()
        self._position = threading.local()

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.tell(), 2: self._size}[whence]
        self._position.value = base + offset
        return self._position.value

    def tell(self) -> int:
        return getattr(self._position, "value", 0)

    def read(self, length: int = -1) -> bytes:
        start = self.tell()
        if length is None or length < 0:
            length = self._size - start
        length = max(0, min(length, self._size - start))
        data = self._source.read_at(length, start) if length else b""
        self._position.value = start + len(data)
        return data

    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self._source.closed

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> PositionalReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def register_duckdb(con: duckdb.DuckDBPyConnection, locations: list[Location] | tuple = ()) -> None:
    """Let `con` read the object-store URLs among `locations` (`read_parquet('s3://...')`),
    through an fsspec wrapper of the same pyarrow file system (DuckDB's httpfs extension is not
    needed, nor downloaded)."""
    schemes = {urlsplit(str(loc)).scheme.lower() for loc in locations if is_url(loc)}
    env = tuple(os.environ.get(k) for k in ENV_KEYS)
    for scheme in sorted(schemes):
        fs = _duckdb_filesystem(scheme, env)
        mine = _REGISTERED.setdefault(con, {})
        if con.filesystem_is_registered(scheme):
            if mine.get(scheme) is fs:
                continue
            con.unregister_filesystem(scheme)  # a pooled connection's, made for another store address
        con.register_filesystem(fs)
        mine[scheme] = fs


_REGISTERED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> scheme -> file system


def remove_tree(folder: Location) -> None:
    """Remove a local folder, or every object under a URL prefix."""
    if not is_url(folder):
        shutil.rmtree(folder, ignore_errors=True)
        return
    fs, path = filesystem(str(folder))
    try:
        fs.delete_dir_contents(path, missing_dir_ok=True)
    except OSError as err:
        raise _fail(folder, "remove", err) from None
