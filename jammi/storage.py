"""Files under the artifact directory: where frames live, and writes that are atomic (a
temporary file beside the target, then one rename), so a reader never sees half a file."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from jammi.errors import ArtifactError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

FRAMES_DIR = "frames"


def frame_path(artifact_dir: Path, asset_name: str) -> Path:
    """Where the frame of an asset (raw_, validated_, quarantine_, fused_...) is kept."""
    return Path(artifact_dir) / FRAMES_DIR / f"{asset_name}.parquet"


def partition_path(artifact_dir: Path, asset_name: str, partition: str) -> Path:
    """Where one partition of a partitioned asset's frame is kept (its folder holds them all)."""
    return partition_dir(artifact_dir, asset_name) / f"{quote(partition, safe='-_.:@ ')}.parquet"


def partition_dir(artifact_dir: Path, asset_name: str) -> Path:
    """The folder of a partitioned asset's partition files."""
    return Path(artifact_dir) / FRAMES_DIR / asset_name


def stored_frame(artifact_dir: Path, asset_name: str) -> Path | None:
    """What holds an asset's stored rows: its Parquet file, or the folder of its partition files
    (DuckDB reads it as `<folder>/*.parquet`, pyarrow and pandas as a dataset); None when
    nothing was stored yet."""
    single = frame_path(artifact_dir, asset_name)
    if single.exists():
        return single
    folder = partition_dir(artifact_dir, asset_name)
    return folder if folder.is_dir() and any(folder.glob("*.parquet")) else None


FRAME_META = "_frame.json"  # beside a partitioned asset's files: its unique key


def partition_key_of(folder: Path) -> str | None:
    """The unique key a partitioned asset's folder declares (None: rows are not deduplicated)."""
    try:
        return json.loads((Path(folder) / FRAME_META).read_text(encoding="utf-8")).get("unique_key")
    except (OSError, ValueError):
        return None


def parquet_glob(path: Path) -> str:
    """`path` as DuckDB's read_parquet takes it: a file, or every Parquet file of a folder."""
    return str(Path(path) / "*.parquet") if Path(path).is_dir() else str(path)


def tmp_path(path: Path) -> Path:
    """The hidden temporary file a write goes to before its rename onto `path`."""
    return path.parent / f".{path.name}.tmp"


def write_json_atomic(path: Path, payload: dict) -> None:
    tmp = tmp_path(path)
    tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


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
    take the other parts' type, and anything else becomes text."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.parts_dir = self.path.parent / f".{self.path.name}.parts-{os.getpid()}-{secrets.token_hex(4)}"
        self.parts: list[Path] = []  # sealed files, in order
        self.rows = 0
        self.head: pd.DataFrame | None = None  # the first rows written, for previews
        self.columns: list[str] | None = None
        self._stream = None  # pq.ParquetWriter of the file batches stream into, while open
        self._stream_path: Path | None = None

    def write(self, frame: pd.DataFrame) -> None:
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
            self._stream.close()
            self.parts.append(self._stream_path)
            self._stream = None

    def files(self) -> list[Path]:
        """The files written so far, readable (later batches go to new parts)."""
        self._seal()
        return list(self.parts)

    def close(self) -> Path:
        """Put the joined frame at `path` (an empty frame when nothing was written)."""
        import shutil

        self._seal()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_path(self.path)
        try:
            if not self.parts:
                import pandas as pd

                pd.DataFrame().to_parquet(tmp, index=False)
            elif len(self.parts) == 1:
                os.replace(self.parts[0], tmp)
            else:
                _join_parts(self.parts, tmp)
            os.replace(tmp, self.path)
        finally:
            shutil.rmtree(self.parts_dir, ignore_errors=True)
        return self.path

    def discard(self) -> None:
        import shutil

        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
            self._stream = None
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        tmp_path(self.path).unlink(missing_ok=True)


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
