"""One micro-batch of a stream source, the one code path of the stream worker and of a Dagster
micro-batch run: decode the JSON events, validate them with the source's silver recipe, and,
under the pipeline lock, write the rejected ones to `quarantine_<source>`, the valid ones to
`validated_<source>` and the pipeline's table (a new version holding only the batch's added and
changed rows). The caller then dead-letters the rejected events and acknowledges the batch:
nothing is acknowledged before its commit, and a redelivered event finds its key and content
hash current and adds no row, so each event takes effect exactly once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import pandas as pd

from jammi import keys, store
from jammi.embedding.model import Encoder
from jammi.errors import ArtifactError
from jammi.ingest.nats_stream import Event
from jammi.shared import FRAMES_DIR, frame_path, read_frame, write_frame
from jammi.silver.pandera_model import REASON_COLUMN
from jammi.silver.recipe import to_silver
from jammi.spec.project import Project
from jammi.storage import write_parquet_atomic
from jammi.tables.append import Appended, KeyState, append_rows, key_state, merge_segments, needs_merge
from jammi.tables.build import build_embedding_table, keyed_texts
from jammi.tables.catalog import Catalog
from jammi.tables.contract import manifest_index_spec
from jammi.tables.generation import generation_of
from jammi.tables.index import build_index
from jammi.tables.recovery import recover

SEQ_COLUMN = "_stream_seq"
PAYLOAD_COLUMN = "_payload"
LOCK_WAIT_S = 0.5  # then PipelineBusy: the worker backs off and tries again
PAYLOAD_CHARS = 2000


@dataclass
class Rejected:
    event: Event
    reason: str
    quarantine: bool = True  # False: only dead-lettered (failed too many deliveries)


@dataclass
class BatchResult:
    """What one micro-batch did; `latencies` are publish time -> searchable, per accepted event."""

    pipeline: str
    source: str
    events: int
    accepted: int = 0
    superseded: int = 0  # earlier events of a key that a later event in the batch replaced
    rejected: list[Rejected] = field(default_factory=list)
    appended: Appended | None = None
    table_name: str = ""
    committed_at: float = 0.0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    lag: int = 0
    dead_lettered: int = 0  # set by the caller once published

    @property
    def quarantined(self) -> int:
        return sum(1 for r in self.rejected if r.quarantine)

    def counts(self) -> dict:
        a = self.appended
        return {"events": self.events, "accepted": self.accepted, "quarantined": self.quarantined,
                "dead_lettered": self.dead_lettered, "superseded_in_batch": self.superseded,
                "added": a.added if a else 0, "changed": a.changed if a else 0,
                "unchanged": a.unchanged if a else 0, "version": a.version if a else None,
                "rows": a.rows if a else None, "seconds": round(self.seconds, 3)}


def _cell(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


class BatchCommitter:
    """Commits micro-batches of one pipeline; keeps the table's keys between batches (reloaded
    only when another process committed in between) and the model, loaded once."""

    def __init__(self, project: Project, pipeline: str, encoder: Encoder):
        self.project, self.pipeline, self.encoder = project, pipeline, encoder
        self.pipe = project.pipelines[pipeline]
        self.source = self.pipe.source
        self.src = project.sources[self.source]
        if self.src.kind != "nats":
            raise ArtifactError(f"pipeline {pipeline!r}: source {self.source!r} is kind {self.src.kind!r}, "
                                "not a stream (kind: nats); run `jammi materialize` instead")
        self.catalog = Catalog(project.artifact_dir)
        self.state: KeyState | None = None
        self.recovered = False
        self.registered: set[str] = set()  # frames whose catalog view this worker has made

    def decode(self, events: list[Event]) -> tuple[pd.DataFrame, dict[str, Event], list[Rejected], int]:
        """Rows (one per key, the latest event's), the event of each key, the undecodable events,
        and how many earlier events of a key the batch superseded."""
        key = self.src.key
        rejected, latest = [], {}
        for e in sorted(events, key=lambda e: e.seq):
            try:
                obj = json.loads(e.data)
            except (UnicodeDecodeError, ValueError) as err:
                rejected.append(Rejected(e, f"event {e.seq}: not JSON ({err})"))
                continue
            if not isinstance(obj, dict):
                rejected.append(Rejected(e, f"event {e.seq}: a JSON {type(obj).__name__}, not an object"))
                continue
            if obj.get(key) is None:
                rejected.append(Rejected(e, f"event {e.seq}: key {key!r} is missing or null"))
                continue
            latest[str(obj[key])] = (e, {c: _cell(obj.get(c)) for c in self.src.columns})
        superseded = len(events) - len(rejected) - len(latest)
        frame = pd.DataFrame([row for _, row in latest.values()], columns=list(self.src.columns))
        return frame, {k: e for k, (e, _) in latest.items()}, rejected, superseded

    def commit(self, events: list[Event]) -> BatchResult:
        """Validate and commit `events`; raises PipelineBusy when another writer holds the table."""
        t0 = time.perf_counter()
        result = BatchResult(self.pipeline, self.source, len(events))
        spent = [e for e in events if e.deliveries > self.src.nats.max_deliver]
        result.rejected += [Rejected(e, f"event {e.seq}: delivered {e.deliveries} times without a commit "
                                        f"(max_deliver {self.src.nats.max_deliver})", quarantine=False)
                            for e in spent]
        spent_seqs = {e.seq for e in spent}
        frame, by_key, bad, result.superseded = self.decode([e for e in events if e.seq not in spent_seqs])
        result.rejected += bad
        silver = to_silver(frame, self.src, self.source) if len(frame) else None
        if silver is not None:
            for _, row in silver.quarantine.iterrows():
                event = by_key.pop(str(row[self.src.key]), None)
                if event is not None:
                    result.rejected.append(Rejected(event, f"event {event.seq}: {row[REASON_COLUMN]}"))
        valid = silver.valid if silver is not None else frame
        with self.catalog.pipeline_lock(self.pipeline, wait_s=LOCK_WAIT_S):
            if not self.recovered:
                recover(self.catalog)  # a worker or run killed mid-build left its table settled
                self.recovered = True
            self._quarantine(result.rejected, frame)
            if len(valid):
                self._validated(valid)
                result.appended = self._commit_rows(valid)
            result.committed_at = time.time()
        result.accepted = len(by_key)
        result.latencies = [max(0.0, result.committed_at - e.published) for e in by_key.values()]
        result.table_name = self.state.table_name if self.state else ""
        result.seconds = time.perf_counter() - t0
        return result

    def _commit_rows(self, valid: pd.DataFrame) -> Appended:
        rec = self.catalog.active(pipeline=self.pipeline)
        generation = generation_of(self.pipe, self.src)
        if rec is None:
            return self._first_table(valid)
        if rec.generation != generation:
            raise ArtifactError(f"pipeline {self.pipeline!r}: the active table {rec.table_name} is of "
                                "another generation (model, text columns or schema changed); a stream cannot "
                                "rebuild it from past events: replay the stream into a new pipeline")
        if self.state is None or not self.state.serves(rec):  # first batch, or another writer committed
            self.state = key_state(self.catalog, rec)
        row_keys, texts, _ = keyed_texts(valid, self.src.key, self.pipe.text_columns)
        done = append_rows(catalog=self.catalog, rec=rec, state=self.state, pipeline=self.pipeline,
                           source=self.source, keys=row_keys, texts=texts, encoder=self.encoder,
                           batch_size=self.pipe.batch_size)
        if done.committed and needs_merge(self.state):
            done.version = merge_segments(self.catalog, rec, self.pipeline, self.state).version
        return done

    def _first_table(self, valid: pd.DataFrame) -> Appended:
        """No table yet: the first batch builds one (blue/green protocol, version 0)."""
        # the build's input, private to this process: in this node's folder
        path = self.project.artifact_dir / FRAMES_DIR / f".{keys.validated(self.source)}.first-batch.parquet"
        write_parquet_atomic(valid, path)
        try:
            stats = build_embedding_table(catalog=self.catalog, frame_file=path, pipeline=self.pipeline,
                                          pipe=self.pipe, source=self.source, src=self.src,
                                          encoder=self.encoder)
        finally:
            path.unlink(missing_ok=True)
        rec = self.catalog.active(pipeline=self.pipeline)
        built = build_index(rec.base_path, rec.dimensions or 0, manifest_index_spec(rec.base_path))
        self.catalog.record_sidecars(rec.table_name, built.digests)
        self.state = key_state(self.catalog, rec)
        return Appended(0, added=stats.rows_embedded, rows_encoded=stats.rows_encoded,
                        rows_failed=stats.rows_failed, rows=stats.rows_embedded, seconds=stats.seconds)

    def _validated(self, valid: pd.DataFrame) -> None:
        """The source's validated rows (search reads its columns there): the batch's rows replace
        those of the same keys."""
        path = frame_path(self.project.artifact_dir, keys.validated(self.source))
        key = self.src.key
        if store.exists(path):
            old = read_frame(path)
            old = old[~old[key].astype(str).isin(set(valid[key].astype(str)))]
            merged = pd.concat([old, valid], ignore_index=True) if len(old) else valid.reset_index(drop=True)
        else:
            merged = valid.reset_index(drop=True)
        write_frame(merged, path)
        self._register(keys.validated(self.source), path, len(merged))

    def _quarantine(self, rejected: list[Rejected], frame: pd.DataFrame) -> None:
        """Rejected events as extracted (every field as text), with reason, sequence and payload;
        an event already there (a redelivery) is not added twice."""
        rows = [r for r in rejected if r.quarantine]
        if not rows:
            return
        path = frame_path(self.project.artifact_dir, keys.quarantine(self.source))
        new = pd.DataFrame([self._as_extracted(r) for r in rows],
                           columns=[*self.src.columns, REASON_COLUMN, SEQ_COLUMN, PAYLOAD_COLUMN])
        new[SEQ_COLUMN] = new[SEQ_COLUMN].astype("int64")
        if store.exists(path):
            old = read_frame(path)
            if SEQ_COLUMN in old:
                new = new[~new[SEQ_COLUMN].isin(set(old[SEQ_COLUMN].dropna().astype("int64")))]
            if not len(new):
                return
            new = pd.concat([old, new], ignore_index=True)
        write_frame(new, path)
        self._register(keys.quarantine(self.source), path, len(new))

    def _register(self, name: str, path, rows: int) -> None:
        """The frame's catalog view (`jammi.<name>`), made once per worker: it reads the file."""
        if name not in self.registered:
            self.catalog.register_output(name, path, rows)
            self.registered.add(name)

    def _as_extracted(self, r: Rejected) -> dict:
        text = r.event.data.decode("utf-8", errors="replace")
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        fields = {c: (None if not isinstance(obj, dict) or obj.get(c) is None else str(_cell(obj[c])))
                  for c in self.src.columns}
        return {**fields, REASON_COLUMN: r.reason, SEQ_COLUMN: r.event.seq,
                PAYLOAD_COLUMN: text[:PAYLOAD_CHARS]}
