"""Extract a declared source as-is into a DataFrame (bronze), and check its keys.

Files are read with every column as text so that typing happens once, in validation,
where a bad value sends its row to quarantine instead of silently becoming NaN.
"""

from __future__ import annotations

import glob
import io
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from jammi.errors import KeyIntegrityError, SourceError
from jammi.ingest.cells import mark_unstorable
from jammi.ingest.remote import RemoteFile, SourceFile, is_url, list_files
from jammi.redact import dsn_secrets, redact
from jammi.spec.project import Project, SourceSpec
from jammi.storage import BATCH_ROWS
from jammi.types import coerce_value

MAX_LISTED_KEYS = 10
EXCERPT = 60  # characters of a bad line shown in its error
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # pandas' JSON reader drops lone ones
NUL_SCAN = 1 << 20  # bytes read at a time when looking for a NUL byte


def own_dirs(project: Project) -> list[Path]:
    """Folders holding Jammi's own files (frames, tables, run history), which a source glob must
    not read; the artifact directory is left out when the project itself lies inside it."""
    root = project.root.resolve()
    artifacts = project.artifact_dir.resolve()
    return [d for d in (artifacts, root / ".dagster") if not root.is_relative_to(d)]


def source_files(project: Project, name: str, spec: SourceSpec) -> list[SourceFile]:
    """The files a file source reads: its path, or every file its glob matches (but Jammi's own
    files), sorted; the listed objects when the path is an object-store URL."""
    if is_url(spec.path):
        try:
            found = list_files(spec.path)
        except SourceError as err:
            raise SourceError(f"source {name!r}: {err}") from None
        if not found:
            raise SourceError(f"source {name!r}: no object matches path {spec.path!r}")
        return list[SourceFile](found)
    pattern = str(project.resolve(spec.path or ""))
    files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise SourceError(f"source {name!r}: no file matches path {spec.path!r} ({pattern})")
    if any(c in pattern for c in "*?["):
        excluded = own_dirs(project)
        files = [f for f in files if not any(f.resolve().is_relative_to(d) for d in excluded)]
        if not files:
            raise SourceError(
                f"source {name!r}: path {spec.path!r} only matches Jammi's own files (under "
                f"{' or '.join(map(str, excluded))}); point it at the source's data files"
            )
    return list[SourceFile](files)


def _decode_error(name: str, file: SourceFile, spec: SourceSpec, err: UnicodeDecodeError) -> SourceError:
    data = file.read_bytes()
    try:  # pandas decodes CSV field by field, so its offsets are relative to one field
        data.decode(spec.encoding)
    except UnicodeDecodeError as whole:
        err = whole
    line = data.count(b"\n", 0, err.start) + 1
    return SourceError(
        f"source {name!r}: {file.name} is not valid {spec.encoding}: byte 0x{data[err.start]:02x} "
        f"at offset {err.start} (line {line}); declare the file's encoding, e.g. "
        f"'encoding: cp1252', in the source"
    )


def bad_json_line(text: str) -> tuple[int, str, str] | None:
    """(1-based line number, problem, excerpt) of the first line of JSON Lines `text` that is
    neither blank nor a JSON object; None when every line is one."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            problem = f"{err.msg} at column {err.colno}"
        else:
            if isinstance(value, dict):
                continue
            problem = f"a JSON {type(value).__name__}"
        excerpt = line.strip()
        return number, problem, repr(excerpt if len(excerpt) <= EXCERPT else excerpt[:EXCERPT] + "...")
    return None


def _read_file(name: str, spec: SourceSpec, file: Path | RemoteFile) -> Iterator[pd.DataFrame]:
    """The file's rows, BATCH_ROWS at a time (an object is streamed from its store)."""
    try:
        if isinstance(file, RemoteFile):
            with file.open() as handle:
                yield from _read_handle(name, spec, file, handle)
        else:
            yield from _read_handle(name, spec, file, file)
    except UnicodeDecodeError as err:
        raise _decode_error(name, file, spec, err) from None
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise SourceError(f"source {name!r}: cannot read {file}: {err}") from None


def _has_nul(handle) -> bool:
    """Whether the (seekable binary) file holds a NUL byte; read from its start, then rewound."""
    opened = open(handle, "rb") if isinstance(handle, Path) else None
    source = opened or handle
    try:
        while chunk := source.read(NUL_SCAN):
            if b"\0" in chunk:
                return True
        return False
    finally:
        if opened is not None:
            opened.close()
        else:
            handle.seek(0)


def _read_handle(name: str, spec: SourceSpec, file: Path | RemoteFile, handle) -> Iterator[pd.DataFrame]:
    if spec.kind == "csv":
        # pandas' C parser ends a cell at a NUL byte: a file holding one is read by the Python
        # parser, which keeps the cell whole (validation then quarantines its row)
        yield from pd.read_csv(
            handle, dtype=str, keep_default_na=False, na_values=[""],
            encoding=spec.encoding, sep=spec.delimiter,
            quotechar=spec.quotechar, escapechar=spec.escapechar, chunksize=BATCH_ROWS,
            engine="python" if _has_nul(handle) else "c",
        )
    elif spec.kind == "jsonl":
        yield from _read_jsonl(name, spec, file, handle)
    else:
        pf = pq.ParquetFile(handle)
        for batch in pf.iter_batches(batch_size=BATCH_ROWS):
            yield batch.to_pandas()
        if pf.metadata.num_rows == 0:
            yield pf.schema_arrow.empty_table().to_pandas()


def _read_jsonl(name: str, spec: SourceSpec, file: Path | RemoteFile, source) -> Iterator[pd.DataFrame]:
    """JSON Lines, BATCH_ROWS lines at a time; a line that is not a JSON object is named by its
    number in the file. `source`: the local path, or the object's binary file."""
    first = 1
    opened = (open(source, encoding=spec.encoding) if isinstance(source, Path)
              else io.TextIOWrapper(source, encoding=spec.encoding))
    with opened as handle:
        while True:
            lines = list(itertools.islice(handle, BATCH_ROWS))
            if not lines:
                return
            text = "".join(lines)
            if text.strip():
                try:
                    if SURROGATE_ESCAPE.search(text):  # json keeps a lone surrogate; pandas drops it
                        records = [json.loads(line) for line in lines if line.strip()]
                        if not all(isinstance(r, dict) for r in records):
                            raise TypeError("a line is not a JSON object")
                        yield pd.DataFrame.from_records(records)
                    else:
                        yield pd.read_json(io.StringIO(text), lines=True, dtype=False, convert_dates=False)
                except (ValueError, TypeError, AttributeError) as err:  # pandas' errors vary
                    bad = bad_json_line(text)
                    if bad is None:
                        raise SourceError(f"source {name!r}: cannot read {file}: {err}") from None
                    raise SourceError(f"source {name!r}: {file.name} line {bad[0] + first - 1} is not a "
                                      f"JSON object ({bad[1]}): {bad[2]}") from None
            first += len(lines)


def _read_duckdb(project: Project, name: str, spec: SourceSpec) -> Iterator[pd.DataFrame]:
    if spec.database:
        db = project.resolve(spec.database)
        if not db.is_file():
            raise SourceError(f"source {name!r}: DuckDB database {spec.database!r} not found ({db})")
        try:
            con = duckdb.connect(str(db), read_only=True)
        except duckdb.Error as err:
            raise SourceError(f"source {name!r}: cannot open DuckDB database {db}: {err}") from None
    else:
        con = duckdb.connect()
    try:
        con.execute(f"SET file_search_path = '{str(project.root).replace(chr(39), chr(39) * 2)}'")
        if spec.table:
            ident = ".".join('"' + p.replace('"', '""') + '"' for p in spec.table.split("."))
            con.execute(f"SELECT * FROM {ident}")
        else:
            con.execute(spec.query)
        first = True
        while True:  # DuckDB's own frame conversion (as .df()), a chunk of vectors at a time
            chunk = con.fetch_df_chunk(BATCH_ROWS // 2048)
            if len(chunk) or first:
                yield chunk
            first = False
            if not len(chunk):
                return
    except duckdb.Error as err:
        raise SourceError(f"source {name!r}: DuckDB query failed: {err}") from None
    finally:
        con.close()


def _read_postgres(name: str, spec: SourceSpec) -> Iterator[pd.DataFrame]:
    import psycopg
    from psycopg import sql

    query = sql.SQL(spec.query) if spec.query else sql.SQL("SELECT * FROM {}").format(
        sql.Identifier(*spec.table.split("."))
    )
    try:
        # a server-side cursor: the server holds the result, the client BATCH_ROWS rows of it
        with psycopg.connect(spec.dsn, connect_timeout=10) as conn, \
                conn.cursor(name=f"jammi_extract_{name}"[:60]) as cur:
            cur.itersize = BATCH_ROWS
            cur.execute(query)
            cols = [d.name for d in cur.description]
            first = True
            while True:
                rows = cur.fetchmany(BATCH_ROWS)
                if rows or first:
                    yield pd.DataFrame(rows, columns=cols)
                first = False
                if not rows:
                    return
    except psycopg.Error as err:
        what = f"table {spec.table!r}" if spec.table else "query"
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SourceError(f"source {name!r}: PostgreSQL {what} failed: {detail}") from None


def extract(project: Project, name: str, spec: SourceSpec | None = None) -> pd.DataFrame:
    """Read source `name` as it is, whole (as `spec` says, when given: one partition's file,
    say); raise SourceError naming the source on any failure, with every credential masked.
    The asset writes a source batch by batch instead (`extract_batches`)."""
    spec = spec or project.sources[name]
    frames = [f for f in extract_batches(project, name, spec) if len(f.columns)]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    check_keys(name, spec.key, df, spec.columns[spec.key].type)
    declared = set(spec.columns) if spec.schema_ is None else None
    return storable(df, declared).reset_index(drop=True)


def extract_batches(project: Project, name: str, spec: SourceSpec | None = None) -> Iterator[pd.DataFrame]:
    """The rows of source `name` as they are, BATCH_ROWS at a time, each batch's columns
    checked and made storable; keys are not checked here (`KeyLedger` does it across batches)."""
    spec = spec or project.sources[name]
    declared = set(spec.columns) if spec.schema_ is None else None
    try:
        for batch in _batches(project, name, spec):
            check_columns(name, spec, batch)
            yield storable(batch, declared).reset_index(drop=True)
    except SourceError as err:
        secrets = [*project.secrets, *dsn_secrets(spec.dsn)]
        raise type(err)(redact(str(err), secrets)) from None


def _batches(project: Project, name: str, spec: SourceSpec) -> Iterator[pd.DataFrame]:
    if spec.kind in ("csv", "jsonl", "parquet"):
        empty, rows = pd.DataFrame(), False
        for file in source_files(project, name, spec):
            for batch in _read_file(name, spec, file):
                if len(batch.columns) and len(batch):
                    rows = True
                    yield batch
                elif len(batch.columns) and not len(empty.columns):
                    empty = batch
        if not rows:  # no file had a row: the columns (or none at all) still get checked
            yield empty
    elif spec.kind == "duckdb":
        yield from _read_duckdb(project, name, spec)
    elif spec.kind == "nats":
        raise SourceError(f"source {name!r} is a NATS stream: its events are read in micro-batches by "
                          f"`jammi stream <pipeline>` (or a `{name}_job` run), not extracted as a whole")
    else:
        yield from _read_postgres(name, spec)


def _as_text(value):
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    return coerce_value(value, "str")[1]


def storable(frame: pd.DataFrame, declared: set[str] | None) -> pd.DataFrame:
    """The frame with every column Parquet can store as it is.

    Columns holding values of several Python types (a field whose type changed between schema
    versions, e.g. price "12.5" in v1 and 12.5 in v2) become text; validation types them.
    Columns that are not declared (`declared`; None for a versioned source, whose columns
    differ by version) and hold objects or lists (BEIR's `"metadata": {}`) become JSON text,
    so they stay readable in `raw_<source>`. Nulls stay null; other columns are untouched.
    A text cell holding a NUL or a lone surrogate marks its row for quarantine (jammi.ingest.cells).
    """
    out = frame
    for col in frame.columns:
        if frame[col].dtype != object or pd.api.types.infer_dtype(frame[col], skipna=True) == "string":
            continue  # one type (text read from a CSV: the common case, decided in C)
        values = frame[col].dropna()
        types = {type(v) for v in values}
        nested = bool(types & {dict, list, tuple}) and (declared is None or col not in declared)
        if len(types) > 1 or nested:
            out = out.copy() if out is frame else out
            out[col] = frame[col].map(lambda v: None if v is None else _as_text(v))
    return mark_unstorable(out)


def check_columns(name: str, spec: SourceSpec, df: pd.DataFrame) -> None:
    # a versioned source's rows may all be older versions: only the key is in every version
    expected = spec.columns if spec.schema_ is None else [spec.key]
    missing = [c for c in expected if c not in df.columns]
    if missing:
        found = ", ".join(map(str, df.columns)) or "none"
        raise SourceError(
            f"source {name!r}: declared column(s) {', '.join(map(repr, missing))} not found "
            f"(the source has: {found})"
        )


def _typed_key(value, key_type: str) -> str:
    ok, typed = coerce_value(value, key_type)
    return str(typed) if ok else f"\0{value}"  # untypable: kept apart from every typed key


def _typed_keys(keys: pd.Series, key_type: str) -> pd.Series:
    """Each key as text, spelled as validation will type it (`01` of an int key as `1`); a
    value that cannot be typed keeps its spelling (it goes to quarantine later)."""
    text = keys.astype(str)
    if key_type == "str" and pd.api.types.infer_dtype(keys, skipna=True) == "string":
        return text
    odd = pd.Series(True, index=keys.index)
    if key_type == "int":  # canonical spellings type to themselves; only the others are typed
        odd = ~text.str.fullmatch(r"-?(?:0|[1-9][0-9]*)")
    typed = text.copy()
    typed[odd] = [_typed_key(v, key_type) for v in keys[odd]]
    return typed


def _listed(spellings: list[str], key_type: str) -> str:
    """`'5' x2`, or `'01' = '1' (the same int) x2` when the copies are spelled differently."""
    distinct = list(dict.fromkeys(spellings))
    if len(distinct) == 1:
        return f"{distinct[0]!r} x{len(spellings)}"
    return f"{' = '.join(map(repr, distinct))} (the same {key_type}) x{len(spellings)}"


def check_keys(name: str, key: str, df: pd.DataFrame, key_type: str = "str") -> None:
    """Null or duplicate keys refuse the whole run: nothing is written for the source. Keys
    are compared as validation types them, so `01` and `1` of an int key are duplicates."""
    keys = df[key]
    nulls = int(keys.map(lambda v: pd.isna(v) or (isinstance(v, str) and not v.strip())).sum())
    if nulls:
        raise KeyIntegrityError(
            f"source {name!r}: key column {key!r} has {nulls} null or empty value(s) out of "
            f"{len(df)} rows; the run is refused and nothing was written"
        )
    typed = _typed_keys(keys, key_type)
    counts = typed.value_counts()
    dupes = counts[counts > 1]
    if len(dupes):
        text = keys.astype(str)
        listed = ", ".join(_listed(text[typed == k].tolist(), key_type)
                           for k in dupes.index[:MAX_LISTED_KEYS])
        more = f" and {len(dupes) - MAX_LISTED_KEYS} more" if len(dupes) > MAX_LISTED_KEYS else ""
        raise KeyIntegrityError(
            f"source {name!r}: key column {key!r} has {len(dupes)} duplicated key(s): "
            f"{listed}{more}; the run is refused and nothing was written"
        )
