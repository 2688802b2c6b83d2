"""USearch HNSW sidecars: built from the Parquet table in record batches, loaded with
integrity checks so that a stale or corrupt sidecar is never trusted."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from usearch.index import Index

from jammi import checksums, store
from jammi.embedding.vectors import vectors_of
from jammi.spec.project import IndexSpec
from jammi.store import Location
from jammi.tables.arrays import int64s, take
from jammi.tables.contract import sidecar
from jammi.tables.versions import FileRef, Version, deleted_by_segment, read_ref

READ_BATCH = 8192
MOSTLY_DELETED = 0.5
# A segment of up to this many rows is searched by USearch's brute-force scan of the sidecar's
# vectors, not its graph: at that size the scan costs about what the walk does (0.16 ms at
# 1,024 rows, 0.29 against 0.21 ms at 2,048, 384 dimensions, here), and a small graph can leave
# a row unreachable (HNSW's neighbour pruning; seen once on the demo's 45-row chunks table,
# recall@10 0.93), which a scan never does.
EXACT_ROWS = 2048


@dataclass(frozen=True)
class IndexStats:
    path: Path
    rows: int
    seconds: float
    bytes: int
    digests: tuple[tuple[str, str], ...] = ()  # (sidecar file name, digest) of the files written


class RowMap:
    """Index keys to row ids. The index holds one vector per distinct content hash of its
    segment (rows with one text have one vector), so that a catalogue repeating a title many
    times does not fill the HNSW graph with identical points, whose neighbour lists then hold
    nothing but each other and cut the graph into islands a search cannot leave. `row_ids` are
    the segment's rows grouped by key; key k's rows are `row_ids[offsets[k]:offsets[k + 1]]`.
    A sidecar written before keys were shared maps key = row position (`offsets` None)."""

    def __init__(self, row_ids: pa.Array, keys: np.ndarray | None = None):
        self.row_ids = row_ids
        self.offsets = None if keys is None else np.searchsorted(keys, np.arange(
            (int(keys[-1]) + 2) if len(keys) else 1))

    @property
    def keys(self) -> int:
        return len(self.row_ids) if self.offsets is None else len(self.offsets) - 1

    def __len__(self) -> int:
        return len(self.row_ids)

    def expand(self, keys: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The row ids of `keys` (in their order) and, for each, the position of its key."""
        keys = np.asarray(keys, dtype=np.int64)
        if self.offsets is None:
            return take(self.row_ids, int64s(keys)).to_pylist(), np.arange(len(keys))
        starts, ends = self.offsets[keys], self.offsets[keys + 1]
        sizes = ends - starts
        which = np.repeat(np.arange(len(keys)), sizes)
        positions = np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))
        return take(self.row_ids, int64s(positions)).to_pylist(), which


def build_index(base: Location, dimensions: int, spec: IndexSpec) -> IndexStats:
    """Build `<base>.usearch` and `<base>.rowmap` from `<base>.parquet`: one vector per distinct
    content hash (its first row's), the rowmap naming every row of each key."""
    t0 = time.perf_counter()
    pf = store.parquet_file(sidecar(base, ".parquet"))
    index = Index(
        ndim=dimensions,
        metric=spec.metric,
        dtype=spec.dtype,
        connectivity=spec.connectivity,
        expansion_add=spec.expansion_add,
        expansion_search=spec.expansion_search,
    )
    row_ids: list[pa.Array] = []
    row_keys: list[np.ndarray] = []
    key_of: dict[str, int] = {}
    rows = 0
    for batch in pf.iter_batches(batch_size=READ_BATCH, columns=["_row_id", "vector", "_content_hash"]):
        hashes = batch.column("_content_hash").to_pylist()
        before = len(key_of)  # keys are numbered in order of first sight: new ones are >= before
        keys = np.fromiter((key_of.setdefault(h, len(key_of)) for h in hashes), dtype=np.int64,
                           count=len(hashes))
        fresh = np.flatnonzero(keys >= before)
        new = fresh[np.unique(keys[fresh], return_index=True)[1]]  # each new key's first row
        if len(new):
            vecs = vectors_of(batch.column("vector").take(pa.array(new)), dimensions)
            index.add(keys[new].astype(np.uint64), vecs, threads=os.cpu_count() or 1)
        row_ids.append(batch.column("_row_id"))
        row_keys.append(keys)
        rows += len(hashes)
    index_path = sidecar(base, ".usearch")
    index_digest = store.write_object(index_path, lambda tmp, save=index.save: save(str(tmp)))
    checksums.written(index_path, index_digest)
    keys = np.concatenate(row_keys) if row_keys else np.zeros(0, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    ids = pa.concat_arrays(row_ids) if row_ids else pa.array([], pa.string())
    rowmap = pa.table({"_row_id": take(ids, int64s(order)),
                       "_key": pa.array(keys[order].astype(np.uint32), pa.uint32())})
    rowmap_path = sidecar(base, ".rowmap")

    def write_rowmap(tmp: Path) -> None:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, rowmap.schema) as writer:
            writer.write_table(rowmap)
    rowmap_digest = store.write_object(rowmap_path, write_rowmap)
    checksums.written(rowmap_path, rowmap_digest)
    del index
    pa.default_memory_pool().release_unused()
    digests = ((store.name_of(index_path), index_digest), (store.name_of(rowmap_path), rowmap_digest))
    return IndexStats(index_path, rows, time.perf_counter() - t0, store.size(index_path) or 0, digests)


def _key_array(column: pa.ChunkedArray) -> np.ndarray:
    """The rowmap's uint32 keys as numpy, read off the Arrow buffer (Arrow's own conversion
    imports pandas, which `jammi search` never loads)."""
    array = column.combine_chunks()
    if array.null_count:
        raise SidecarUnusable("rowmap keys hold nulls")
    return np.frombuffer(array.buffers()[1], dtype=np.uint32, count=len(array), offset=array.offset * 4)


class SidecarUnusable(Exception):
    """The sidecar is missing, corrupt or out of step with the Parquet table."""


def load_index(base: Location, expected_rows: int, spec: IndexSpec | None = None,
               digests: dict[str, str] | None = None, fresh: bool = False) -> tuple[Index, RowMap]:
    """A segment's sidecars, memory-mapped: local files where they are, an object store's from
    this node's cache (fetched on first use, jammi.store.local_copy). A sidecar whose bytes do
    not match the digest recorded for it (`digests`, by file name; jammi.checksums, `fresh`:
    hashed even when this node hashed it before) is unusable."""
    try:
        index_path, rowmap_path = (store.local_copy(sidecar(base, s)) for s in (".usearch", ".rowmap"))
    except FileNotFoundError:
        raise SidecarUnusable("sidecar files are missing") from None
    if not index_path.exists() or not rowmap_path.exists():
        raise SidecarUnusable("sidecar files are missing")
    for suffix in (".usearch", ".rowmap"):
        name = store.name_of(sidecar(base, suffix))
        if not checksums.matches(sidecar(base, suffix), (digests or {}).get(name), fresh):
            raise SidecarUnusable(f"{name} does not match the checksum recorded when it was built "
                                  f"(damaged); `jammi verify --repair` rebuilds it")
    try:
        index = Index.restore(str(index_path), view=True)
        if index is None:
            raise SidecarUnusable(f"{store.name_of(sidecar(base, '.usearch'))} is not a USearch index")
        with pa.memory_map(str(rowmap_path)) as source:
            table = pa.ipc.open_file(source).read_all()
        keys = _key_array(table.column("_key")) if "_key" in table.column_names else None
        if keys is not None and len(keys) and np.any(np.diff(keys.astype(np.int64)) < 0):
            raise SidecarUnusable(f"{store.name_of(sidecar(base, '.rowmap'))} keys are out of order")
        rowmap = RowMap(table.column("_row_id").combine_chunks(), keys)
    except SidecarUnusable:
        raise
    except Exception as err:  # usearch and Arrow raise assorted types on damaged files
        raise SidecarUnusable(f"cannot read sidecars: {err}") from None
    if len(index) != rowmap.keys or len(rowmap) != expected_rows:
        raise SidecarUnusable(
            f"sidecars hold {len(index)} vectors for {rowmap.keys} keys / {len(rowmap)} row ids, "
            f"table has {expected_rows}"
        )
    if spec is not None:
        index.expansion_search = spec.expansion_search
    return index, rowmap


def sidecar_files(base: Location) -> tuple[str, str]:
    """The paths of a segment's two sidecars, as strings (stat-ed before every cached search;
    an object store's never change under their immutable names, and stat as missing here)."""
    return str(sidecar(base, ".usearch")), str(sidecar(base, ".rowmap"))


def sidecar_signature(files: tuple[str, str]) -> tuple:
    """What identifies the bytes of a segment's sidecars (`sidecar_files`) on disk: inode, size
    and mtime of both files. A sidecar is memory-mapped, so one rewritten in place must be
    noticed and reloaded before it is read again (reading a truncated mapping kills the
    process with SIGBUS)."""
    out = []
    for path in files:
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def _digests_of(version: Version, ref: FileRef) -> tuple:
    """The recorded digests of segment `ref`'s two sidecars in `version` (None where none is)."""
    digests = version.sidecar_digests
    stem = ref.file.removesuffix(".parquet")
    return digests.get(f"{stem}.usearch"), digests.get(f"{stem}.rowmap")


def segment_base(tables_dir: Location, ref: FileRef) -> Location:
    """The base path of a segment's sidecars: `<segment>.usearch` and `<segment>.rowmap`."""
    return store.join(tables_dir, ref.file.removesuffix(".parquet"))


def _similarity(distances: np.ndarray, metric: str) -> np.ndarray:
    return 1.0 - distances / 2.0 if metric == "l2sq" else 1.0 - distances


class VersionIndex:
    """Nearest-neighbour search over one version of a table: each segment's HNSW sidecar, the
    version's deletions dropped from the hits, results merged by similarity. A segment whose
    sidecar is missing, corrupt or stale is scored exactly instead."""

    def __init__(self, tables_dir: Location, version: Version, dimensions: int, spec: IndexSpec,
                 reuse: VersionIndex | None = None, fresh: bool = False):
        """`reuse`: an index of an earlier version of the same table, whose loaded segments
        (immutable files) this one takes over instead of loading them again. `fresh`: hash
        every sidecar against its recorded checksum (`jammi verify`), not only those this node
        has not hashed yet."""
        self.fresh = fresh
        self.tables_dir: Location = tables_dir if store.is_url(tables_dir) else Path(tables_dir)
        self.version = version
        self.dimensions, self.spec = dimensions, spec
        self.deleted = deleted_by_segment(tables_dir, version)
        self.parts: list[tuple[FileRef, Index | None, RowMap | None]] = []
        self.signatures: dict[FileRef, tuple] = {}
        self.files = {ref: sidecar_files(segment_base(tables_dir, ref)) for ref in version.segments}
        self.problems: dict[str, str] = {}
        loaded = {ref: (index, rowmap) for ref, index, rowmap in (reuse.parts if reuse else ())
                  if index is not None and reuse.spec == spec and not fresh
                  and _digests_of(reuse.version, ref) == _digests_of(version, ref)}
        for ref in version.segments:
            signature = sidecar_signature(self.files[ref])
            if ref in loaded and reuse.signatures.get(ref) == signature:
                self.parts.append((ref, *loaded[ref]))
                self.signatures[ref] = signature
                continue
            self.parts.append(self._load(ref, signature))

    def _load(self, ref: FileRef, signature: tuple) -> tuple[FileRef, Index | None, RowMap | None]:
        self.signatures[ref] = signature
        self.problems.pop(ref.file, None)
        try:
            index, rowmap = load_index(segment_base(self.tables_dir, ref), ref.rows, self.spec,
                                       self.version.sidecar_digests, self.fresh)
        except SidecarUnusable as err:
            index, rowmap = None, None
            self.problems[ref.file] = str(err)
        return ref, index, rowmap

    def revalidate(self) -> None:
        """Reload every segment whose sidecar files changed on disk since they were loaded
        (Jammi replaces files by rename, so only outside damage or repair does this): a
        few stat calls, cheap enough for a cached index to make before each search."""
        for i, (ref, _, _) in enumerate(self.parts):
            signature = sidecar_signature(self.files[ref])
            if signature != self.signatures.get(ref):
                self.parts[i] = self._load(ref, signature)

    @property
    def unindexed_rows(self) -> int:
        """Current rows whose segment has no usable sidecar."""
        return sum(ref.rows - len(self.deleted.get(ref.file, ())) for ref, index, _ in self.parts
                   if index is None)

    def search(self, q: np.ndarray, k: int, allowed: set[str] | None = None,
               exclude: set[str] = frozenset()) -> list[tuple[str, float]]:
        return self.search_many(q.reshape(1, -1), k, allowed, exclude)[0]

    def search_many(self, queries: np.ndarray, k: int, allowed: set[str] | None = None,
                    exclude: set[str] = frozenset()) -> list[list[tuple[str, float]]]:
        """The `k` nearest current rows (in `allowed`, not in `exclude`) of each row of
        `queries`: one batched HNSW search per segment, a query whose hits the deletions or
        the filter thinned below `k` searched again alone with a wider net."""
        self.revalidate()
        hits: list[list[tuple[str, float]]] = [[] for _ in range(len(queries))]
        for ref, index, rowmap in self.parts:
            gone = self.deleted.get(ref.file, set()) | set(exclude)
            if index is None or len(gone) > MOSTLY_DELETED * max(1, ref.rows):
                # no sidecar, or one whose graph is mostly deleted rows: score the segment exactly
                found = self._exact_segment(ref, queries, k, allowed, gone)
            else:
                found = self._ann_segment(index, rowmap, queries, k, allowed, gone)
            for mine, more in zip(hits, found, strict=True):
                mine += more
        for mine in hits:
            mine.sort(key=lambda h: -h[1])
            del mine[k:]
        return hits

    def _ann_segment(self, index, rowmap, queries, k, allowed, gone) -> list[list[tuple[str, float]]]:
        total = len(index)
        if total == 0:
            return [[] for _ in range(len(queries))]
        share = 1.0 if allowed is None else max(len(allowed) / max(1, self.version.rows), 1e-4)
        count = min(total, int((k + len(gone)) * (1 if allowed is None else max(10, 2 / share))))
        found = self._ann_pass(index, rowmap, queries, count, allowed, gone)
        out = []
        for q, hits in zip(queries, found, strict=True):
            wider = count
            while len(hits) < k and wider < total:
                wider = min(total, wider * 4)
                hits = self._ann_pass(index, rowmap, q.reshape(1, -1), wider, allowed, gone)[0]
            out.append(hits[:k])
        return out

    def _ann_pass(self, index, rowmap, queries, count, allowed, gone) -> list[list[tuple[str, float]]]:
        # one query: search on this thread (a worker pool per call costs more than it saves)
        matches = index.search(queries, count, threads=1 if len(queries) == 1 else 0,
                               exact=len(index) <= EXACT_ROWS)
        keys = np.asarray(matches.keys).reshape(len(queries), -1)
        dists = np.asarray(matches.distances).reshape(len(queries), -1)  # a batch's unused slots: NaN
        counts = np.asarray(matches.counts).reshape(-1) if len(queries) > 1 else [len(matches)]
        out = []
        for row_keys, row_dists, n in zip(keys, dists, counts, strict=True):
            rows, which = rowmap.expand(row_keys[:n])
            sims = _similarity(row_dists[:n].astype(np.float64), self.spec.metric)[which].tolist()
            out.append([(r, s) for r, s in zip(rows, sims, strict=True)
                        if r not in gone and (allowed is None or r in allowed)])
        return out

    def _exact_segment(self, ref, queries, k, allowed, gone) -> list[list[tuple[str, float]]]:
        table = read_ref(self.tables_dir, ref, columns=["_row_id", "vector"])
        ids = table.column("_row_id").to_pylist()
        keep = [i for i, r in enumerate(ids) if r not in gone and (allowed is None or r in allowed)]
        if not keep:
            return [[] for _ in range(len(queries))]
        vecs = vectors_of(table.column("vector").take(pa.array(keep)), self.dimensions)
        out = []
        for scores in queries @ vecs.T:
            top = np.argsort(-scores, kind="stable")[:k]
            out.append([(ids[keep[i]], float(scores[i])) for i in top])
        return out
