"""Stream sources (`kind: nats`) against the real NATS JetStream server: configuration errors,
a worker run with good and malformed events (quarantine, dead-letter subject with the reason,
table rows, search), redelivery idempotence, the runless materializations on a Dagster instance
and `stream_sensor` with the micro-batch run it requests."""

from __future__ import annotations

import asyncio
import json

import dagster as dg
import pandas as pd
import pytest

from jammi.app.facade import Jammi
from jammi.app.stream.batch import BatchCommitter
from jammi.app.stream.metrics import read_statuses
from jammi.app.stream.worker import StreamWorker
from jammi.errors import ConfigError, SourceError
from jammi.ingest.nats_stream import NatsConsumer
from jammi.spec.project import parse_project
from jammi.tables.catalog import Catalog
from tests.conftest import invoke_cli, materialize
from tests.stream_support import COLUMNS, event, stream_project


def _parse(tmp_path, source: dict, pipelines=None):
    return parse_project({"sources": {"news": source},
                          "pipelines": pipelines or {"p": {"source": "news", "text_columns": ["title"]}}},
                         tmp_path / "jammi.yaml")


NATS = {"subject": "news.events", "stream": "NEWS", "durable": "jammi_news"}


@pytest.mark.parametrize("source, message", [
    ({"kind": "nats", "key": "id", "columns": COLUMNS}, "kind 'nats' needs a 'nats' block"),
    ({"kind": "csv", "path": "x.csv", "key": "id", "columns": COLUMNS, "nats": NATS},
     "'nats' applies to kind 'nats' sources only"),
    ({"kind": "nats", "key": "id", "columns": COLUMNS, "nats": {**NATS, "stream": "NE.WS"}}, "nats.stream"),
    ({"kind": "nats", "key": "id", "columns": COLUMNS, "nats": {**NATS, "max_batch": 0}}, "nats.max_batch"),
    ({"kind": "nats", "key": "id", "columns": COLUMNS,
      "nats": {k: v for k, v in NATS.items() if k != "durable"}}, "nats.durable"),
    ({"kind": "nats", "key": "id", "columns": COLUMNS, "nats": NATS,
      "partitions": {"by": "id", "granularity": "day", "start": "2026-01-01"}}, "cannot declare partitions"),
])
def test_stream_config_errors(tmp_path, source, message):
    with pytest.raises(ConfigError, match=message):
        _parse(tmp_path, source)


def test_stream_source_feeds_one_pipeline(tmp_path):
    src = {"kind": "nats", "key": "id", "columns": COLUMNS, "nats": NATS}
    two = {p: {"source": "news", "text_columns": ["title"]} for p in ("a", "b")}
    with pytest.raises(ConfigError, match="a nats source feeds one pipeline, not 2"):
        _parse(tmp_path, src, two)
    spec = _parse(tmp_path, src).sources["news"].nats
    assert (spec.max_batch, spec.max_wait_ms, spec.max_deliver) == (100, 500, 5)
    assert spec.dead_letter("news") == "jammi.dead_letter.news"


def test_credentials_are_masked_when_nats_is_unreachable(tmp_path, monkeypatch):
    monkeypatch.setenv("NATS_PASSWORD", "s3cret-pass")
    project = _parse(tmp_path, {"kind": "nats", "key": "id", "columns": COLUMNS, "nats": {
        **NATS, "servers": "nats://jammi:${NATS_PASSWORD}@127.0.0.1:1", "password": "${NATS_PASSWORD}"}})
    consumer = NatsConsumer("news", project.sources["news"].nats, project.secrets)
    with pytest.raises(SourceError) as err:
        asyncio.run(consumer.connect())
    assert "source 'news': cannot connect to NATS" in str(err.value)
    assert "s3cret-pass" not in str(err.value)


def _run_worker(project, encoder, **limits):
    worker = StreamWorker(project, "news_titles", encoder, echo=lambda _line: None, status_every_s=60)
    return worker, asyncio.run(worker.run(**limits))


@pytest.mark.slow
def test_worker_commits_good_events_and_dead_letters_bad_ones(tmp_path, stream, encoder):
    project = stream_project(tmp_path, stream, max_wait_ms=200)
    payloads = [event(i) for i in range(12)]
    payloads[3] = b"{not json"  # seq 4
    payloads[5] = event(5, topic="gossip")  # seq 6: fails the isin check
    payloads[8] = b'{"title": "no key here", "topic": "world"}'  # seq 9
    stream.publish(payloads)
    worker, metrics = _run_worker(project, encoder, idle_exit_s=1.5)

    assert (metrics.events, metrics.accepted, metrics.dead_lettered) == (12, 9, 3)
    rows = Jammi(project).sql("SELECT _row_id FROM jammi.news_titles_embeddings ORDER BY _row_id::INT")
    assert rows["_row_id"].tolist() == [str(i) for i in range(12) if i not in (3, 5, 8)]
    quarantine = Jammi(project).sql("SELECT _stream_seq, _quarantine_reason FROM jammi.quarantine_news "
                                    "ORDER BY _stream_seq")
    assert quarantine["_stream_seq"].tolist() == [4, 6, 9]
    assert "not JSON" in quarantine["_quarantine_reason"][0]
    assert "topic: isin" in quarantine["_quarantine_reason"][1]
    assert "key 'id' is missing" in quarantine["_quarantine_reason"][2]
    dead = dict(stream.dead_letters())
    assert sorted(dead) == [4, 6, 9] and "topic: isin" in dead[6]
    hits = Jammi(project).search("news_titles", "headline 7 about sport matters", k=1)
    assert hits["_row_id"].tolist() == ["7"]
    [status] = read_statuses(project.artifact_dir)
    assert status["state"] == "stopped" and status["dead_lettered"] == 3 and status["p95_s"] is not None
    assert status["lag"] == 0
    shown = invoke_cli(["status", "--project", str(project.path), "--streams", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    [row] = json.loads(shown.output)  # one JSON document: the streams alone
    assert row["pipeline"] == "news_titles" and row["dead_lettered"] == 3
    tables = invoke_cli(["status", "--project", str(project.path), "--format", "json"])
    assert all("table_name" in t for t in json.loads(tables.output))


@pytest.mark.slow
def test_redelivered_events_add_no_second_row(tmp_path, stream, encoder):
    project = stream_project(tmp_path, stream)
    stream.publish([event(i) for i in range(5)])
    committer = BatchCommitter(project, "news_titles", encoder)
    consumer = NatsConsumer("news", project.sources["news"].nats)

    async def take_twice():
        await consumer.connect()
        events = await consumer.fetch(10, 0.3)
        first = committer.commit(events)  # committed, then the worker "dies" before its ack
        await consumer.nak(events, 0)
        again = await consumer.fetch(10, 0.3)
        second = BatchCommitter(project, "news_titles", encoder).commit(again)  # a restarted worker
        await consumer.ack(again)
        await consumer.close()
        return events, again, first, second

    events, again, first, second = asyncio.run(take_twice())
    assert [e.seq for e in again] == [e.seq for e in events] and all(e.deliveries == 2 for e in again)
    assert (first.appended.added, second.appended.added, second.appended.unchanged) == (5, 0, 5)
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="news_titles")
    assert catalog.current_version(rec).rows == 5 and rec.rows_embedded == 5
    # a changed text for a known key replaces its row in a new version (O(batch): one segment)
    stream.publish([event(2, title="an entirely new headline")])
    _run_worker(project, encoder, max_batches=1)
    version = catalog.current_version(catalog.active(pipeline="news_titles"))
    assert (version.counts.added, version.counts.changed, version.rows) == (0, 1, 5)
    assert version.segments[-1].rows == 1


@pytest.mark.slow
def test_each_batch_is_a_runless_materialization(tmp_path, stream, encoder, monkeypatch):
    from jammi_assets.stream_events import batch_reporter

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dagster_home").mkdir()
    project = stream_project(tmp_path, stream)
    stream.publish([event(i) for i in range(4)] + [event(9, topic="gossip")])
    worker = StreamWorker(project, "news_titles", encoder, echo=lambda _line: None,
                          on_commit=batch_reporter(project, "news_titles"))
    asyncio.run(worker.run(max_batches=1))
    instance = dg.DagsterInstance.get()
    table = instance.get_latest_materialization_event(dg.AssetKey("news_titles_embeddings"))
    assert table is not None and table.run_id == ""  # runless
    meta = table.asset_materialization.metadata
    assert (meta["events"].value, meta["added"].value, meta["dead_lettered"].value) == (5, 4, 1)
    validated = instance.get_latest_materialization_event(dg.AssetKey("validated_news"))
    assert validated.asset_materialization.metadata["rows_quarantined"].value == 1
    assert instance.get_latest_materialization_event(dg.AssetKey("raw_news")) is not None


@pytest.mark.slow
def test_stream_sensor_requests_the_micro_batch_run_past_the_lag_threshold(tmp_path, stream):
    from sensors.stream import build_stream_sensors

    project = stream_project(tmp_path, stream, lag_threshold=3)
    [sensor] = build_stream_sensors(project)
    stream.publish([event(i) for i in range(3)])
    with dg.DagsterInstance.ephemeral() as instance:
        quiet = sensor(dg.build_sensor_context(instance=instance))
        assert quiet.run_requests == [] and "lag 3 <= 3" in quiet.skip_reason.skip_message
        stream.publish([event(i) for i in range(3, 6)])
        [request] = sensor(dg.build_sensor_context(instance=instance)).run_requests
    assert request.run_key == "news:0" and request.tags["jammi/consumer_lag"] == "6"
    names = sorted(k.to_user_string() for k in request.asset_selection)
    assert names == ["news_titles_embeddings", "quarantine_news", "raw_news", "validated_news"]
    # the run it requests takes one micro-batch through the worker's code path
    result = materialize(project, selection=request.asset_selection, raise_on_error=True)
    mats = {m.asset_key.to_user_string(): m
            for m in result.asset_materializations_for_node("news_micro_batch")}
    assert mats["news_titles_embeddings"].metadata["added"].value == 6
    frame = pd.read_parquet(tmp_path / "artifacts" / "frames" / "validated_news.parquet")
    assert sorted(frame["id"].tolist()) == list(range(6))



@pytest.mark.slow
def test_batch_segments_are_merged_and_upserts_stay_single_rows(tmp_path, encoder, monkeypatch):
    import json
    import time

    from jammi.ingest.nats_stream import Event
    from jammi.tables import append

    monkeypatch.setattr(append, "MAX_STREAM_SEGMENTS", 3)
    project = _parse(tmp_path, {"kind": "nats", "key": "id", "columns": COLUMNS, "nats": NATS})
    committer = BatchCommitter(project, "p", encoder)
    seq = 0

    def batch(*items):
        nonlocal seq
        out = []
        for i, title in items:
            seq += 1
            payload = json.dumps({"id": i, "title": title, "topic": "tech"}).encode()
            out.append(Event(seq, 1, time.time(), payload))
        return out

    committer.commit(batch(*[(i, f"first title {i}") for i in range(8)]))  # version 0: 8 rows
    for n in range(4):  # one new key per batch: past 3 segments, those after the first are merged
        committer.commit(batch((100 + n, f"new title {n}")))
    committer.commit(batch((2, "changed title 2"), (2, "changed title 2")))  # an upsert, twice in a batch
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="p")
    version = catalog.current_version(rec)
    outcomes = [v.counts.outcome for v in catalog.versions(rec.table_name)]
    assert outcomes[:5] == ["rebuilt", "appended", "appended", "appended", "merged"]
    assert len(version.segments) <= 3 and sum(v.counts.changed for v in catalog.versions(rec.table_name)) == 1
    rows = Jammi(project).sql("SELECT _row_id, count(*) AS n FROM jammi.p_embeddings GROUP BY 1")
    assert len(rows) == 12 and set(rows["n"]) == {1} and version.rows == 12
    hits = Jammi(project).search("p", "changed title 2", k=1)
    assert hits["_row_id"].tolist() == ["2"]


@pytest.mark.slow
def test_an_event_past_max_deliver_is_dead_lettered_with_the_reason(tmp_path, stream, encoder):
    project = stream_project(tmp_path, stream, max_deliver=1)
    stream.publish([event(1)])
    worker = StreamWorker(project, "news_titles", encoder, echo=lambda _line: None)

    async def fail_once_then_take():
        await worker.consumer.connect()
        first = await worker.consumer.fetch(10, 0.3)
        await worker.consumer.nak(first, 0)  # as after a batch that failed
        again = await worker.consumer.fetch(10, 0.3)
        result = await worker.take_batch(again)
        await worker.consumer.close()
        return again, result

    again, result = asyncio.run(fail_once_then_take())
    assert again[0].deliveries == 2 and result.dead_lettered == 1 and result.appended is None
    [(seq, reason)] = stream.dead_letters()
    assert seq == again[0].seq and "delivered 2 times without a commit (max_deliver 1)" in reason


@pytest.mark.slow
def test_an_unreachable_server_is_retried_with_backoff_not_fatal(tmp_path, encoder):
    project = _parse(tmp_path, {"kind": "nats", "key": "id", "columns": COLUMNS,
                                "nats": {**NATS, "servers": "nats://127.0.0.1:1"}})
    said = []
    worker = StreamWorker(project, "p", encoder, echo=said.append)
    metrics = asyncio.run(worker.run(idle_exit_s=1.5))
    retries = [line for line in said if "cannot connect to NATS" in line and "retrying in" in line]
    assert metrics.transient_errors >= 1 and len(retries) == metrics.transient_errors
    assert worker.backoff.attempts == metrics.transient_errors  # each wait drawn from a longer window
