"""Partitioned sources (issue 10): raw_/validated_/quarantine_ per partition, one embedding table
per pipeline that every partition commits into, equal to the unpartitioned result; a
re-materialized partition encodes only its changed rows; partitions committing at once
lose nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from jammi.app.facade import Jammi
from jammi.errors import ConfigError
from jammi.shared import partition_path
from jammi.tables.catalog import Catalog
from jammi.tables.versions import read_current
from jammi_assets.definitions import build_assets, build_resources
from tests.conftest import REPO, failure_message, materialize, write_project

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
COLUMNS = {"id": "int", "title": "str", "created_at": "str"}


def reviews_rows(per_day: int = 6) -> list[str]:
    rows = []
    for d, day in enumerate(DAYS):
        for i in range(per_day):
            thing = ["warm boots", "rain jacket", "tent", "stove"][i % 4]
            rows.append(f"{(d + 1) * 100 + i},Review {d}-{i}: {thing} for the trail,{day}T{8 + i:02d}:15:00")
    return rows


def reviews_project(root: Path, partitions: dict | None, path: str = "data/reviews.csv"):
    src = {"kind": "csv", "path": path, "key": "id", "columns": COLUMNS}
    if partitions:
        src["partitions"] = partitions
    return write_project(root, sources={"reviews": src},
                         pipelines={"reviews_pipe": {"source": "reviews", "text_columns": ["title"]}})


def write_csv(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,title,created_at\n" + "\n".join(rows) + "\n", encoding="utf-8")


def run_partition(project, key: str, instance=None):
    result = dg.materialize(build_assets(project), resources=build_resources(project),
                            instance=instance or dg.DagsterInstance.ephemeral(), partition_key=key,
                            raise_on_error=False)
    assert result.success, [e.step_failure_data.error.message for e in result.all_events
                            if e.is_step_failure]
    return result


def table_vectors(project) -> dict[str, np.ndarray]:
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="reviews_pipe")
    rows = read_current(rec.tables_dir, catalog.current_version(rec), ["_row_id", "vector"])
    ids = rows.column("_row_id").to_pylist()
    assert len(ids) == len(set(ids)), "a key is served twice"
    return dict(zip(ids, np.array(rows.column("vector").to_pylist(), dtype=np.float32), strict=True))


def embed_metadata(result) -> dict:
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key.to_user_string() == "reviews_pipe_embeddings":
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError("no embeddings materialization")


@pytest.mark.parametrize("bad, message", [
    ({"by": "posted", "start": "2026-11-01"}, "'posted' is not a declared column"),
    ({"by": "created_at"}, "need 'start'"),
    ({"by": "{date}", "start": "2026-11-01"}, "path holds {date}"),
    ({"dynamic": "batches"}, "needs a stream source"),
    ({"by": "created_at", "dynamic": "files", "start": "2026-11-01"}, "exactly one of 'by'"),
    ({"by": "created_at", "start": "yesterday"}, "not an ISO date"),
])
def test_bad_partitions_are_refused_naming_the_field(tmp_path, bad, message):
    write_csv(tmp_path / "data" / "reviews.csv", reviews_rows(1))
    with pytest.raises(ConfigError) as err:
        reviews_project(tmp_path, bad)
    assert message in str(err.value) and "partitions" in str(err.value)


@pytest.mark.slow
def test_partitioned_source_equals_unpartitioned_and_refreshes_one_partition(tmp_path):
    rows = reviews_rows()
    write_csv(tmp_path / "flat" / "data" / "reviews.csv", rows)
    flat = reviews_project(tmp_path / "flat", None)
    assert materialize(flat).success
    write_csv(tmp_path / "parts" / "data" / "reviews.csv", rows)
    parts = reviews_project(tmp_path / "parts", {"by": "created_at", "granularity": "day",
                                                 "start": "2026-11-01"})
    assets = {a.key.to_user_string(): a for a in build_assets(parts) if len(a.keys) == 1}
    assert assets["raw_reviews"].partitions_def.get_partition_keys()[:4] == DAYS
    assert assets["reviews_pipe_embeddings"].partitions_def == assets["raw_reviews"].partitions_def

    for day in DAYS:
        run_partition(parts, day)
    assert len(Catalog(parts.artifact_dir).tables()) == 1  # one table per pipeline
    got, want = table_vectors(parts), table_vectors(flat)
    assert sorted(got) == sorted(want) and len(got) == 24
    np.testing.assert_allclose(np.stack([got[k] for k in sorted(got)]),
                               np.stack([want[k] for k in sorted(want)]), atol=1e-5)
    for day in DAYS:
        assert partition_path(parts.artifact_dir, "validated_reviews", day).exists()
    jammi = Jammi(parts)
    assert jammi.sql("SELECT count(*) AS n FROM jammi.validated_reviews")["n"][0] == 24
    recorded = jammi.sql("SELECT DISTINCT partition FROM jammi.quality_report WHERE asset = "
                         "'validated_reviews' ORDER BY 1")["partition"].tolist()
    assert recorded == DAYS
    hits = jammi.search("reviews_pipe", "stove for cooking outdoors", k=24)
    assert {h // 100 for h in hits["_row_id"].astype(int)} == {1, 2, 3, 4}  # every partition

    # two rows of one day change: re-materializing that day encodes exactly those two
    edited = [r.replace("warm boots", "felt slippers") if r.startswith(("200,", "204,")) else r
              for r in rows]
    write_csv(tmp_path / "parts" / "data" / "reviews.csv", edited)
    meta = embed_metadata(run_partition(parts, "2026-11-02"))
    assert (meta["rows_encoded"], meta["changed"], meta["added"], meta["deleted"]) == (2, 2, 0, 0)
    assert len(table_vectors(parts)) == 24
    # a day that lost a row: only that row leaves the table
    write_csv(tmp_path / "parts" / "data" / "reviews.csv", [r for r in edited if not r.startswith("301,")])
    meta = embed_metadata(run_partition(parts, "2026-11-03"))
    assert (meta["rows_encoded"], meta["deleted"]) == (0, 1)
    assert "301" not in table_vectors(parts) and len(table_vectors(parts)) == 23


@pytest.mark.slow
def test_date_path_partitions_read_one_file_each(tmp_path):
    rows = reviews_rows(3)
    for day in DAYS[:2]:
        write_csv(tmp_path / "data" / "reviews" / f"{day}.csv", [r for r in rows if f",{day}T" in r])
    project = reviews_project(tmp_path, {"by": "{date}", "granularity": "day", "start": "2026-11-01"},
                              path="data/reviews/{date}.csv")
    run_partition(project, DAYS[0])
    assert sorted(table_vectors(project)) == ["100", "101", "102"]
    run_partition(project, DAYS[1])
    assert sorted(table_vectors(project)) == ["100", "101", "102", "200", "201", "202"]
    result = dg.materialize(build_assets(project), resources=build_resources(project),
                            instance=dg.DagsterInstance.ephemeral(), partition_key=DAYS[2],
                            raise_on_error=False)
    assert not result.success  # no file for that day: a clear error, nothing changes
    assert "2026-11-03.csv" in failure_message(result)
    assert len(table_vectors(project)) == 6


PARTITION_RUN = textwrap.dedent("""
    import sys
    import dagster as dg
    from jammi.spec.project import load_project
    from jammi_assets.definitions import build_assets, build_resources
    project = load_project(sys.argv[1])
    result = dg.materialize(build_assets(project), resources=build_resources(project),
                            instance=dg.DagsterInstance.ephemeral(), partition_key=sys.argv[2],
                            raise_on_error=False)
    sys.exit(0 if result.success else 1)
""")


@pytest.mark.slow
def test_partitions_materialized_at_once_lose_no_commit(tmp_path):
    write_csv(tmp_path / "data" / "reviews.csv", reviews_rows(8))
    project = reviews_project(tmp_path, {"by": "created_at", "granularity": "day", "start": "2026-11-01"})
    procs = [subprocess.Popen([sys.executable, "-c", PARTITION_RUN, str(project.path), day], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for day in DAYS]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
    got = table_vectors(project)
    assert len(got) == 32 and {int(k) // 100 for k in got} == {1, 2, 3, 4}
    catalog = Catalog(project.artifact_dir)
    assert [t.status for t in catalog.tables()] == ["ready"]
    assert Jammi(project).verify()[0].clean


@pytest.mark.slow
def test_dynamic_file_partitions_one_per_landed_file(tmp_path):
    rows = reviews_rows(2)
    write_csv(tmp_path / "data" / "reviews" / "batch-a.csv", rows[:4])
    write_csv(tmp_path / "data" / "reviews" / "batch-b.csv", rows[4:])
    project = reviews_project(tmp_path, {"dynamic": "files"}, path="data/reviews/*.csv")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("reviews_files", ["batch-a.csv", "batch-b.csv"])
    run_partition(project, "batch-a.csv", instance)
    assert sorted(table_vectors(project)) == ["100", "101", "200", "201"]
    run_partition(project, "batch-b.csv", instance)
    assert len(table_vectors(project)) == 8
    assert Jammi(project).sql("SELECT count(*) AS n FROM jammi.raw_reviews")["n"][0] == 8


@pytest.mark.slow
def test_a_full_backfill_rebuilds_the_table_once(tmp_path):
    write_csv(tmp_path / "data" / "reviews.csv", reviews_rows(2))
    project = reviews_project(tmp_path, {"by": "created_at", "granularity": "day", "start": "2026-11-01"})
    for day in DAYS:
        run_partition(project, day)
    before = Catalog(project.artifact_dir).active(pipeline="reviews_pipe").table_name
    full = {"ops": {"reviews_pipe_embeddings": {"config": {"full": True}}}}
    for day in DAYS:  # the runs of one backfill share its id
        result = dg.materialize(build_assets(project), resources=build_resources(project),
                                instance=dg.DagsterInstance.ephemeral(), partition_key=day,
                                run_config=full, tags={"dagster/backfill": "bf1"})
        assert result.success
    tables = Catalog(project.artifact_dir).tables()
    assert len(tables) == 2 and tables[1].table_name == before  # one rebuild, not four
    assert len(table_vectors(project)) == 8


def partition_of(project) -> dict[str, str]:
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="reviews_pipe")
    rows = read_current(rec.tables_dir, catalog.current_version(rec), ["_partition"])
    return dict(zip(rows.column("_row_id").to_pylist(), rows.column("_partition").to_pylist(), strict=True))


@pytest.mark.slow
def test_a_partition_run_counts_its_partition_and_a_moved_key_follows_the_last_run(tmp_path):
    rows = reviews_rows()  # 6 rows a day
    write_csv(tmp_path / "data" / "reviews.csv", rows)
    project = reviews_project(tmp_path, {"by": "created_at", "granularity": "day", "start": "2026-11-01"})
    for day in DAYS:
        meta = embed_metadata(run_partition(project, day))
        # the materialization counts its own partition, the table is reported beside it
        assert meta["dagster/row_count"] == 6 and meta["rows_embedded"] == 6
    assert meta["table_rows"] == 24
    assert set(partition_of(project).values()) == set(DAYS)
    # nothing changed: a partition's run commits nothing and still counts its own rows
    meta = embed_metadata(run_partition(project, DAYS[1]))
    assert (meta["outcome"], meta["dagster/row_count"], meta["unchanged"]) == ("no_change", 6, 6)
    # row 101 moves from the first day to the second (its timestamp was corrected)
    moved = [r.replace("2026-11-01T09", "2026-11-02T09") if r.startswith("101,") else r for r in rows]
    write_csv(tmp_path / "data" / "reviews.csv", moved)
    meta = embed_metadata(run_partition(project, DAYS[1]))
    # last write wins: the second day's run takes the key over, reusing its vector
    assert (meta["changed"], meta["rows_encoded"], meta["deleted"], meta["dagster/row_count"]) == (1, 0, 0, 7)
    assert partition_of(project)["101"] == DAYS[1]
    meta = embed_metadata(run_partition(project, DAYS[0]))  # the first day no longer holds it
    assert (meta["deleted"], meta["dagster/row_count"]) == (0, 5)
    got = partition_of(project)
    assert len(got) == 24 and got["101"] == DAYS[1]
    assert Jammi(project).sql("SELECT count(*) AS n FROM jammi.validated_reviews")["n"][0] == 24
    assert Jammi(project).verify()[0].clean
