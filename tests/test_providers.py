"""Embedding providers: a pipeline whose texts are embedded by an OpenAI-compatible service.

Pure parts (spec, packing, pacing, token counts) are tested alone; the rest against a real
server on 127.0.0.1 (Infinity serving the packaged all-MiniLM-L6-v2, tests/provider_support.py),
with faults injected by a proxy in front of it: vectors equal the in-process model's, a table is
built, refreshed and searched through the provider with its cost recorded, and 429s, 5xx, slow
answers, dropped connections and refused texts cost retries or per-row errors, never rows.
"""

from __future__ import annotations

import threading
import time

import duckdb
import numpy as np
import pytest

from jammi.app.facade import Jammi
from jammi.embedding.providers import CachedQueries, load_provider, pipeline_encoder
from jammi.embedding.providers.counting import TokenCounter
from jammi.embedding.providers.limits import RateLimiter
from jammi.embedding.providers.openai_api import retry_after
from jammi.embedding.providers.sender import pack
from jammi.errors import ConfigError, ProviderError
from jammi.spec.project import DEFAULT_MODEL, PipelineSpec
from jammi.spec.provider import ProviderSpec
from jammi.tables.catalog import Catalog
from jammi.tables.generation import generation_of
from tests.conftest import failure_message, invoke_cli, materialize, write_project
from tests.provider_support import API_KEY, REFUSE_MARKER, SERVED_MODEL, FaultProxy, start_infinity

WORDS = ["kettle", "lamp", "chair", "tent", "drill", "scarf", "piano", "mug", "boots", "atlas", "sofa",
         "radio", "bike", "clock", "desk", "fan", "glove", "hat", "jar", "knife"]
ROWS = {i: (f"Product {i} {WORDS[i % len(WORDS)]}",
            f"A {WORDS[(i * 7) % len(WORDS)]} for everyday use, model {i}") for i in range(1, 41)}
SELECT = ["raw_items", "validated_items", "quarantine_items", "items_embeddings", "items_ann_index"]


def provider_spec(base_url: str, **extra) -> ProviderSpec:
    return ProviderSpec(base_url=base_url, api_key=API_KEY, model=SERVED_MODEL, **extra)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --- the spec, packing, pacing and counting, without a server ---------------------------------

def test_provider_block_parses_and_excludes_an_in_process_model():
    pipe = PipelineSpec.model_validate({"source": "s", "text_columns": ["t"], "provider": {
        "model": "text-embedding-3-small", "dimensions": 512, "api_key": "sk-secret-abcdef123456",
        "base_url": "http://127.0.0.1:7997/"}})
    assert pipe.model_id == "openai:text-embedding-3-small@512"
    assert pipe.provider.base_url == "http://127.0.0.1:7997"
    assert "sk-secret" not in repr(pipe) and "sk-secret" not in pipe.model_dump_json()
    with pytest.raises(ValueError, match="provider.model"):
        PipelineSpec.model_validate({"source": "s", "text_columns": ["t"], "model": DEFAULT_MODEL,
                                     "provider": {"model": "m"}})
    with pytest.raises(ValueError, match="base_url"):
        ProviderSpec(model="m", base_url="127.0.0.1:7997")


def test_provider_model_and_dimensions_are_part_of_the_generation(tmp_path):
    project = write_project(tmp_path, {"items": {"kind": "csv", "path": "x.csv", "key": "id",
                                                 "columns": {"id": "int", "title": "str"}}},
                            {"a": {"source": "items", "text_columns": ["title"]},
                             "b": {"source": "items", "text_columns": ["title"],
                                   "provider": {"model": SERVED_MODEL, "base_url": "http://127.0.0.1:1"}},
                             "c": {"source": "items", "text_columns": ["title"],
                                   "provider": {"model": SERVED_MODEL, "base_url": "http://127.0.0.1:1",
                                                "dimensions": 128}},
                             "d": {"source": "items", "text_columns": ["title"],
                                   "provider": {"model": SERVED_MODEL, "base_url": "http://127.0.0.1:2"}}})
    src = project.sources["items"]
    generations = {name: generation_of(pipe, src) for name, pipe in project.pipelines.items()}
    assert len(set(generations.values())) == 4, generations


def test_requests_are_packed_by_texts_and_tokens():
    assert pack([5, 5, 5, 5, 5], max_texts=2, max_tokens=100) == [[0, 1], [2, 3], [4]]
    assert pack([40, 40, 40, 10], max_texts=10, max_tokens=90) == [[0, 1], [2, 3]]
    assert pack([500, 3, 3], max_texts=10, max_tokens=90) == [[0], [1, 2]]  # too long alone: its own
    assert pack([], 4, 10) == []


def test_rate_limiter_paces_requests_and_tokens_and_honours_pauses():
    now = [0.0]
    limiter = RateLimiter(requests_per_minute=120, tokens_per_minute=6000, clock=lambda: now[0],
                          sleep=lambda s: now.__setitem__(0, now[0] + s))
    starts = []
    for tokens in (10, 10, 200, 10):
        limiter.acquire(tokens)
        starts.append(now[0])
    # 120/min: 0.5 s apart; 200 tokens at 6000/min hold the next start 2 s
    assert starts == pytest.approx([0.0, 0.5, 1.0, 3.0])
    limiter.pause(5.0)
    assert limiter.acquire(1) == pytest.approx(5.0)


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after": "2"}, 2.0), ({"retry-after-ms": "250"}, 0.25), ({"retry-after": "soon"}, None),
    ({}, None),
])
def test_retry_after_headers(headers, expected):
    assert retry_after(headers) == expected


@pytest.mark.slow
def test_known_tokenizer_counts_exactly_and_cuts_to_the_window(encoder):
    counter = TokenCounter(ProviderSpec(model=SERVED_MODEL, base_url="http://127.0.0.1:1"))
    assert counter.exact and counter.window == encoder.max_seq_length == 256
    texts = ["a short one", "word " * 600]
    assert counter.counts(texts)[0] == encoder.token_counts(texts)[:1][0]
    fitted = counter.fit(texts)
    assert fitted.cut == [False, True] and fitted.texts[0] == texts[0]
    assert fitted.counts[1] == 256 and encoder.token_counts([fitted.texts[1]]) == [256]
    assert texts[1].startswith(fitted.texts[1])


def test_unknown_tokenizer_estimates_high_and_cuts_safely():
    counter = TokenCounter(ProviderSpec(model="text-embedding-3-small", base_url="http://127.0.0.1:1"))
    assert not counter.exact and counter.window == 8191
    english = "The quick brown fox jumps over the lazy dog. " * 10
    assert counter.counts([english])[0] >= len(english) / 4  # above a BPE vocabulary's count
    fitted = counter.fit(["é" * 20000])
    assert fitted.cut == [True] and fitted.counts[0] <= 8191 and fitted.texts[0] == "é" * len(fitted.texts[0])


@pytest.mark.parametrize(("text", "shown"), [
    ("Incorrect API key provided: sk-proj-abcdef0123456789.", "Incorrect API key provided: sk-***."),
    ("Authorization: Bearer abcdefghijkl123", "Authorization: Bearer ***"),
    ("task-force sk-8 skipped", "task-force sk-8 skipped"),  # too short to be a key
])
def test_api_keys_are_masked_wherever_a_message_shows_them(text, shown):
    from jammi.redact import redact

    assert redact(text) == shown


def test_missing_key_for_openai_itself_is_a_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        load_provider(ProviderSpec(model="text-embedding-3-small"))


# --- against the real server ------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_infinity(tmp_path_factory.mktemp("infinity"))
    yield s
    s.stop()


@pytest.fixture
def proxy(server):
    p = FaultProxy(server.base_url)
    yield p
    p.stop()


@pytest.mark.slow
def test_vectors_equal_the_in_process_model(server, encoder):
    texts = [f"{t}. {b}" for t, b in ROWS.values()] + ["word " * 600, "Ünïcödé ✓, 日本語も"]
    provider = load_provider(provider_spec(server.base_url, max_batch_texts=16, max_concurrency=3))
    vectors, errors, _ = provider.encode_many(texts)
    assert errors == [None] * len(texts)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, encoder.encode(texts)).min() >= 0.999
    usage = provider.usage.snapshot()
    assert usage.requests == 3 and usage.retries == 0  # 42 texts, 16 per request
    assert usage.tokens_sent == sum(provider.counter.fit(texts).counts)


def items_project(root, base_url, rows=ROWS, **provider):
    data = root / "items.csv"
    write_rows(data, rows)
    return write_project(root, {"items": {"kind": "csv", "path": str(data), "key": "id",
                                          "columns": {"id": "int", "title": "str", "body": "str"}}},
                         {"items": {"source": "items", "text_columns": ["title", "body"], "provider": {
                             "base_url": base_url, "api_key": "${JAMMI_TEST_KEY}", "model": SERVED_MODEL,
                             "price_per_million_tokens": 0.02, "max_batch_texts": 16, **provider}}})


def write_rows(path, rows: dict) -> None:
    path.write_text("id,title,body\n" + "".join(f'{k},"{t}","{b}"\n' for k, (t, b) in rows.items()),
                    encoding="utf-8")


def run(project):
    result = materialize(project, selection=SELECT)
    assert result.success, failure_message(result)
    [mat] = result.asset_materializations_for_node("items_embeddings")
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()
              if e.asset_key.to_user_string() in ("items_embeddings", "items_ann_index")}
    return {k: v.value for k, v in mat.metadata.items()}, checks, result


@pytest.mark.slow
def test_a_provider_pipeline_builds_refreshes_and_searches_with_its_cost(tmp_path, proxy, encoder,
                                                                         monkeypatch):
    monkeypatch.setenv("JAMMI_TEST_KEY", API_KEY)
    project = items_project(tmp_path, proxy.base_url)
    meta, checks, _ = run(project)
    assert all(checks.values()), checks
    assert meta["rows_embedded"] == 40 and meta["model"] == f"openai:{SERVED_MODEL}"
    # 40 texts, 16 per request, and one that learned the undeclared dimensions
    assert meta["requests"] == 4 and meta["retries"] == 0 and meta["tokens_avoided"] == 0
    full_tokens = meta["tokens_sent"]
    assert full_tokens > 300 and meta["estimated_cost"] == pytest.approx(full_tokens * 0.02 / 1e6)
    assert all(s.authorization == f"Bearer {API_KEY}" for s in proxy.seen)

    # vectors in the table are the in-process model's
    rec = Catalog(project.artifact_dir).active(pipeline="items")
    con = duckdb.connect()
    rows = con.execute(f"SELECT _row_id, vector FROM '{rec.parquet_path}' "
                       "ORDER BY CAST(_row_id AS INT)").fetchall()
    texts = [f"{ROWS[int(k)][0]} {ROWS[int(k)][1]}" for k, _ in rows]
    stored = np.asarray([v for _, v in rows], dtype=np.float32)
    assert cosines(stored, encoder.encode(texts)).min() >= 0.999

    # one row changed: one text sent, the other 39 avoided
    changed = dict(ROWS)
    changed[7] = ("Product 7 walnut bookshelf", "Solid walnut, five shelves")
    write_rows(project.root / "items.csv", changed)
    sent_before = len(proxy.seen)
    meta, checks, _ = run(project)
    assert all(checks.values()), checks
    assert meta["outcome"] == "refreshed" and meta["rows_encoded"] == 1 and meta["requests"] == 1
    assert len(proxy.seen) == sent_before + 1 and proxy.seen[-1].texts == 1
    assert 0 < meta["tokens_sent"] < 0.05 * full_tokens
    assert meta["tokens_avoided"] == pytest.approx(full_tokens - 19, rel=0.1)  # 39 of 40 texts
    assert meta["cost_avoided"] == pytest.approx(meta["tokens_avoided"] * 0.02 / 1e6)

    # nothing changed: nothing sent, everything avoided
    meta, _, _ = run(project)
    assert meta["outcome"] == "no_change" and meta["requests"] == 0 and len(proxy.seen) == sent_before + 1
    assert meta["tokens_avoided"] > 0.9 * full_tokens

    log = duckdb.connect(str(project.artifact_dir / "jammi.duckdb"), read_only=True).execute(
        "SELECT outcome, requests, tokens_sent, tokens_avoided, estimated_cost FROM refresh_log "
        "ORDER BY committed_at").fetchall()
    assert [r[0] for r in log] == ["rebuilt", "refreshed", "no_change"]
    assert log[0][1:3] == (4, full_tokens) and log[1][1] == 1 and log[2][1] == 0

    status = Jammi(project).status()
    assert status.loc[0, "tokens_sent"] == sum(r[2] for r in log)
    out = invoke_cli(["--project", str(project.path), "status"]).output
    assert "tokens_sent" in out and "estimated_cost" in out

    # queries go through the same provider, each text's vector kept
    jammi = Jammi(project)
    before = len(proxy.seen)
    hits = jammi.search("items", "walnut bookshelf", k=3)
    assert hits["_row_id"].iloc[0] == "7"
    jammi.search("items", "walnut bookshelf", k=3)
    Jammi(project).search("items", "walnut bookshelf", k=1)  # another facade, the same process
    assert len(proxy.seen) == before + 1
    cli = invoke_cli(["--project", str(project.path), "search", "items", "walnut bookshelf", "-k", "1"])
    assert cli.exit_code == 0 and "walnut" in cli.output


@pytest.mark.slow
def test_switching_the_provider_builds_a_new_table_blue_green(tmp_path, server, monkeypatch):
    monkeypatch.setenv("JAMMI_TEST_KEY", API_KEY)
    project = items_project(tmp_path, server.base_url)
    run(project)
    first = Catalog(project.artifact_dir).active(pipeline="items")
    project = items_project(tmp_path, server.base_url, dimensions=128)
    meta, checks, _ = run(project)
    catalog = Catalog(project.artifact_dir)
    active = catalog.active(pipeline="items")
    assert active.table_name != first.table_name and active.dimensions == 128 and meta["dimensions"] == 128
    assert meta["outcome"] == "rebuilt" and all(checks.values())
    assert catalog.table(first.table_name).status == "ready"  # kept for rollback
    assert Jammi(project).search("items", "a piano", k=1)["similarity"].iloc[0] > 0.3


@pytest.mark.slow
def test_faults_cost_retries_never_rows(proxy, encoder):
    faults = {0: ("status", 429, 1), 1: ("status", 503, None), 2: ("drop",), 3: ("drop_body",),
              4: ("slow", 4.0), 5: ("status", 500, None)}
    proxy.plan = lambda n, _body: faults.get(n)
    texts = [f"{t}. {b}" for t, b in ROWS.values()]
    provider = load_provider(provider_spec(proxy.base_url, max_batch_texts=5, max_concurrency=2,
                                           timeout_s=2))
    vectors, errors, _ = provider.encode_many(texts)
    assert errors == [None] * len(texts)
    assert cosines(vectors, encoder.encode(texts)).min() >= 0.999
    usage = provider.usage.snapshot()
    assert usage.rate_limited == 1 and usage.retries == 6 and usage.requests == 8 + 6
    limited_at = next(s.at for s in proxy.seen if s.fault == faults[0])
    later = [s.at - limited_at for s in proxy.seen if s.at > limited_at + 0.05]  # not already in flight
    assert min(later) >= 1.0  # Retry-After: 1 held every thread
    assert usage.rate_limit_waits >= 1 and usage.rate_limit_wait_s >= 1.0


@pytest.mark.slow
def test_a_service_that_never_answers_fails_the_run_clearly(proxy):
    proxy.plan = lambda n, _body: ("status", 503, None)
    provider = load_provider(provider_spec(proxy.base_url, max_retries=2))
    t0 = time.monotonic()
    with pytest.raises(ProviderError, match="cannot make progress") as err:
        provider.encode_many(["one", "two"])
    assert "HTTP 503" in str(err.value) and time.monotonic() - t0 < 10
    assert len(proxy.seen) == 3

    proxy.plan = lambda n, _body: ("status", 429, 0.5)
    provider = load_provider(provider_spec(proxy.base_url, stall_timeout_s=2))
    with pytest.raises(ProviderError, match="no request has succeeded|stall_timeout_s"):
        provider.encode_many(["one"])


@pytest.mark.slow
def test_a_refused_text_is_a_row_error_not_a_failed_table(tmp_path, proxy, monkeypatch):
    monkeypatch.setenv("JAMMI_TEST_KEY", API_KEY)
    rows = dict(ROWS)
    rows[13] = (f"Product 13 {REFUSE_MARKER}", "a text the service refuses")
    project = items_project(tmp_path, proxy.base_url, rows=rows)
    meta, checks, result = run(project)
    assert meta["table_status"] == "ready" and meta["rows_embedded"] == 39 and meta["rows_failed"] == 1
    assert all(checks.values()), checks
    assert "| 13 | error | refused by the service: HTTP 400" in meta["failed_rows"]
    rec = Catalog(project.artifact_dir).active(pipeline="items")
    assert rec.rows_failed == 1
    # bisected: the request that held it, then halves down to the text alone
    sizes = [s.texts for s in proxy.seen if s.fault == ("refuse",)]
    assert sizes[0] > 1 and sizes[-1] == 1
    assert all(b <= (a + 1) // 2 for a, b in zip(sizes, sizes[1:], strict=False))

    table = Jammi(project).infer(texts=["a fine text", f"{REFUSE_MARKER} here", None])
    assert table.column("_status").to_pylist() == ["ok", "error", "error"]
    assert table.column("_error").to_pylist()[1].startswith("refused by the service")


@pytest.mark.slow
def test_declared_rates_pace_the_requests(proxy):
    provider = load_provider(provider_spec(proxy.base_url, max_batch_texts=2, max_concurrency=4,
                                           requests_per_minute=240))
    texts = [f"{t}. {b}" for t, b in list(ROWS.values())[:16]]
    provider.encode_many(texts)
    starts = sorted(s.at for s in proxy.seen)
    # 240/min: one start per 0.25 s (the first request's arrival also waits for its connection)
    assert len(starts) == 8 and starts[-1] - starts[1] >= 6 * 0.25 - 0.05
    usage = provider.usage.snapshot()
    assert usage.rate_limit_waits >= 6 and usage.rate_limited == 0


@pytest.mark.slow
def test_the_api_key_is_masked_in_errors_the_event_log_and_the_cli(tmp_path, server, monkeypatch):
    wrong = "sk-wrong-key-9876543210fedcba"
    monkeypatch.setenv("JAMMI_TEST_KEY", wrong)
    project = items_project(tmp_path, server.base_url)
    result = materialize(project, selection=SELECT)
    assert not result.success
    message = failure_message(result)
    assert "HTTP 401" in message and "provider.api_key" in message and wrong not in message
    logged = " ".join(str(e) for e in result.all_events)
    assert wrong not in logged
    cli = invoke_cli(["--project", str(project.path), "materialize", "--select", "items_embeddings"])
    assert cli.exit_code != 0 and wrong not in cli.output
    with pytest.raises(ProviderError) as err:
        pipeline_encoder(project.pipelines["items"]).encode(["x"])
    assert wrong not in str(err.value) and "HTTP 401" in str(err.value)


@pytest.mark.slow
def test_query_vectors_are_cached_per_text(proxy):
    queries = CachedQueries(load_provider(provider_spec(proxy.base_url)))
    first = queries.encode(["a lamp", "a chair"])
    again = queries.encode(["a chair", "a lamp", "a lamp"])
    assert np.allclose(again[1], first[0]) and np.allclose(again[0], first[1])
    assert len(proxy.seen) == 1 and queries.hits == 3
    threads = [threading.Thread(target=queries.encode, args=(["a tent"],)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(proxy.seen) <= 5


def test_vectors_are_normalised_and_their_dimensions_checked(monkeypatch):
    """A hand-written fake of the wire call (the orchestration around it is what is tested)."""
    from types import SimpleNamespace

    from jammi.embedding.providers.sender import Fatal

    provider = load_provider(ProviderSpec(model="text-embedding-3-small", base_url="http://127.0.0.1:1",
                                          api_key="sk-unused-0123456789", dimensions=3))
    answers = {"ok": np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)}
    monkeypatch.setattr(provider._sender, "call", lambda texts: (answers["ok"][: len(texts)], None))
    vectors, errors, _ = provider.encode_many(["a", "b"])
    assert np.allclose(vectors[0], [0.6, 0.8, 0.0]) and errors == [None, "the service returned a zero or "
                                                                   "non-finite vector"]
    wrong = SimpleNamespace(data=[SimpleNamespace(index=0, embedding=[0.1] * 4)], usage=None)
    with pytest.raises(Fatal, match=r"\[4\]-dimensional vectors, 3 expected"):
        provider._vectors(wrong, 1)
    with pytest.raises(Fatal, match="2 vectors for 1 texts"):
        provider._vectors(SimpleNamespace(data=wrong.data * 2, usage=None), 1)


@pytest.mark.slow
def test_a_partitioned_provider_pipeline_sends_only_its_partitions_changes(tmp_path, server, encoder,
                                                                           monkeypatch):
    from tests.test_partitions import DAYS, embed_metadata, reviews_rows, run_partition, table_vectors
    from tests.test_partitions import write_csv as write_reviews

    monkeypatch.setenv("JAMMI_TEST_KEY", API_KEY)
    rows = [r for r in reviews_rows() if r.split(",")[2].startswith(tuple(DAYS[:2]))]
    write_reviews(tmp_path / "data" / "reviews.csv", rows)
    project = write_project(tmp_path, {"reviews": {
        "kind": "csv", "path": "data/reviews.csv", "key": "id",
        "columns": {"id": "int", "title": "str", "created_at": "str"},
        "partitions": {"by": "created_at", "granularity": "day", "start": DAYS[0]}}},
        {"reviews_pipe": {"source": "reviews", "text_columns": ["title"], "provider": {
            "base_url": server.base_url, "api_key": "${JAMMI_TEST_KEY}", "model": SERVED_MODEL,
            "dimensions": 384}}})
    for day in DAYS[:2]:
        meta = embed_metadata(run_partition(project, day))
        assert meta["rows_embedded"] == 6 and meta["requests"] == 1
    vectors = table_vectors(project)
    texts = {r.split(",")[0]: r.split(",")[1] for r in rows}
    keys = sorted(vectors)
    stored = np.stack([vectors[k] for k in keys])
    assert cosines(stored, encoder.encode([texts[k] for k in keys])).min() >= 0.999
    edited = [r.replace("warm boots", "felt slippers") if r.startswith("200,") else r for r in rows]
    write_reviews(tmp_path / "data" / "reviews.csv", edited)
    meta = embed_metadata(run_partition(project, DAYS[1]))
    assert (meta["rows_encoded"], meta["requests"]) == (1, 1)
    assert meta["tokens_avoided"] >= 3 * meta["tokens_sent"]  # the day's five unchanged rows
