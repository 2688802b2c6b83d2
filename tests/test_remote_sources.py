"""File sources on object storage, against a real S3-compatible server (SeaweedFS), and the CSV
glob also on GCS (the gcp-storage-emulator): a CSV glob,
JSON Lines partitioned by a `{date}` path segment and a Parquet file, read as the local files
are; the extraction memo and the file sensors see a replaced object without downloading it; a
missing object, an unreadable one and a wrong encoding are named."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from jammi.app import memo
from jammi.app.sources import _raw_inputs
from jammi.errors import SourceError
from jammi.ingest.extract import extract_batches, source_files
from jammi.ingest.landing import fingerprint, landed_files
from jammi.ingest.partitions import partition_batches
from jammi.ingest.remote import RemoteFile, glob_regex, is_url
from tests.conftest import materialize, ready_tables, write_project

COLUMNS = {"id": {"type": "int", "nullable": False}, "title": "str"}


def _csv(rows: list[tuple[int, str]]) -> bytes:
    return ("id,title\n" + "".join(f"{i},{t}\n" for i, t in rows)).encode()


def test_urls_are_told_from_local_paths():
    assert is_url("s3://bucket/a.csv") and is_url("gs://b/x/*.jsonl") and is_url("az://c/d.parquet")
    assert not is_url("data/a.csv") and not is_url("/abs/a.csv") and not is_url("C:/x.csv")
    assert not is_url(None)
    pattern = glob_regex("bucket/landing/**/*.csv")
    assert pattern.fullmatch("bucket/landing/a.csv") and pattern.fullmatch("bucket/landing/x/y/b.csv")
    assert not pattern.fullmatch("bucket/landing/a.csv.bak") and not pattern.fullmatch("bucket/other/a.csv")


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_a_csv_glob_on_object_storage_is_read_file_by_file(scheme, request, tmp_path):
    server = request.getfixturevalue({"s3": "s3_env", "gs": "gcs_env"}[scheme])  # its address in the env
    base = f"{scheme}://jammi-src/glob"
    server.put(f"{base}/landing/a.csv", _csv([(1, "kettle"), (2, "teapot")]))
    server.put(f"{base}/landing/b.csv", _csv([(3, "mug")]))
    server.put(f"{base}/landing/notes.txt", b"not a source file")
    server.put(f"{base}/elsewhere/c.csv", _csv([(9, "not matched")]))
    project = write_project(tmp_path, {"items": {"kind": "csv", "path": f"{base}/landing/*.csv",
                                                 "key": "id", "columns": COLUMNS}})
    files = source_files(project, "items", project.sources["items"])
    assert [f.url for f in files] == [f"{base}/landing/a.csv", f"{base}/landing/b.csv"]
    rows = pd.concat(list(extract_batches(project, "items")), ignore_index=True)
    assert rows["id"].tolist() == ["1", "2", "3"] and rows["title"].tolist() == ["kettle", "teapot", "mug"]


@pytest.mark.slow
def test_the_memo_and_the_sensor_see_a_replaced_object(s3_env, tmp_path):
    s3_env.put("s3://jammi-src/memo/items.csv", _csv([(1, "kettle")]))
    project = write_project(tmp_path, {"items": {"kind": "csv", "path": "s3://jammi-src/memo/items.csv",
                                                 "key": "id", "columns": COLUMNS}})
    first = _raw_inputs(project, "items", None)
    assert first is not None and first == _raw_inputs(project, "items", None)
    seen = fingerprint(landed_files(project, "items")[""])
    s3_env.put("s3://jammi-src/memo/items.csv", _csv([(1, "kettle"), (2, "teapot")]))
    assert _raw_inputs(project, "items", None) != first
    assert fingerprint(landed_files(project, "items")[""]) != seen
    remote = source_files(project, "items", project.sources["items"])[0]
    assert isinstance(remote, RemoteFile) and remote.size == len(_csv([(1, "kettle"), (2, "teapot")]))
    assert memo.content_digest([remote]) == memo.content_digest([remote])


@pytest.mark.slow
def test_jsonl_partitioned_by_its_path_on_s3(s3_env, tmp_path):
    for day, rows in {"2025-01-01": [(1, "a"), (2, "b")], "2025-01-02": [(3, "c")]}.items():
        body = "".join(json.dumps({"id": i, "title": t}) + "\n" for i, t in rows)
        s3_env.put(f"s3://jammi-src/parts/events/{day}.jsonl", body.encode())
    project = write_project(tmp_path, {"events": {
        "kind": "jsonl", "path": "s3://jammi-src/parts/events/{date}.jsonl", "key": "id", "columns": COLUMNS,
        "partitions": {"by": "{date}", "granularity": "day", "start": "2025-01-01", "end": "2025-01-03"}}})
    groups = landed_files(project, "events")
    assert sorted(groups) == ["2025-01-01", "2025-01-02"]
    assert [f.url for f in groups["2025-01-02"]] == ["s3://jammi-src/parts/events/2025-01-02.jsonl"]
    got = pd.concat(list(partition_batches(project, "events", "2025-01-01").batches), ignore_index=True)
    assert got["id"].astype(int).tolist() == [1, 2] and got["title"].tolist() == ["a", "b"]
    assert _raw_inputs(project, "events", "2025-01-02") != _raw_inputs(project, "events", "2025-01-01")


@pytest.mark.slow
def test_parquet_on_s3(s3_env, tmp_path):
    buf = io.BytesIO()
    pd.DataFrame({"id": [5, 6], "title": ["lamp", "desk"]}).to_parquet(buf, index=False)
    s3_env.put("s3://jammi-src/pq/items.parquet", buf.getvalue())
    project = write_project(tmp_path, {"items": {"kind": "parquet", "path": "s3://jammi-src/pq/items.parquet",
                                                 "key": "id", "columns": COLUMNS}})
    rows = pd.concat(list(extract_batches(project, "items")), ignore_index=True)
    assert rows["title"].tolist() == ["lamp", "desk"]


@pytest.mark.slow
def test_what_cannot_be_read_is_named(s3_env, tmp_path):
    s3_env.put("s3://jammi-src/bad/latin1.csv", "id,title\n1,caf\xe9\n".encode("latin-1"))
    s3_env.put("s3://jammi-src/bad/broken.jsonl", b'{"id": 1, "title": "a"}\n{"id": 2,\n')
    sources = {
        "missing": {"kind": "csv", "path": "s3://jammi-src/bad/nothing-here.csv", "key": "id",
                    "columns": COLUMNS},
        "latin": {"kind": "csv", "path": "s3://jammi-src/bad/latin1.csv", "key": "id", "columns": COLUMNS},
        "broken": {"kind": "jsonl", "path": "s3://jammi-src/bad/broken.jsonl", "key": "id",
                   "columns": COLUMNS},
    }
    project = write_project(tmp_path, sources)
    with pytest.raises(SourceError, match=r"source 'missing': no object matches path 's3://jammi-src/bad/nothing"):
        list(extract_batches(project, "missing"))
    with pytest.raises(SourceError, match=r"source 'latin': latin1.csv is not valid utf-8.*encoding: cp1252"):
        list(extract_batches(project, "latin"))
    with pytest.raises(SourceError, match=r"source 'broken': broken.jsonl line 2"):
        list(extract_batches(project, "broken"))


@pytest.mark.slow
def test_wrong_credentials_are_a_clear_error(s3, tmp_path, monkeypatch):
    s3.put("s3://jammi-src/creds/items.csv", _csv([(1, "kettle")]))
    for name, value in {**s3.env(), "AWS_SECRET_ACCESS_KEY": "wrong"}.items():
        monkeypatch.setenv(name, value)
    project = write_project(tmp_path, {"items": {"kind": "csv", "path": "s3://jammi-src/creds/items.csv",
                                                 "key": "id", "columns": COLUMNS}})
    refused = r"source 'items': cannot list s3://jammi-src/creds/items.csv"
    with pytest.raises(SourceError, match=refused) as err:
        list(extract_batches(project, "items"))
    assert "wrong" not in str(err.value)


@pytest.mark.slow
def test_a_pipeline_over_an_s3_source_builds_its_table(s3_env, tmp_path):
    s3_env.put("s3://jammi-src/e2e/products.csv", _csv([(1, "stainless steel kettle"), (2, "ceramic teapot"),
                                                  (3, "enamel mug")]))
    project = write_project(tmp_path, {"items": {"kind": "csv", "path": "s3://jammi-src/e2e/products.csv",
                                                 "key": "id", "columns": COLUMNS}},
                            {"items_pipe": {"source": "items", "text_columns": ["title"]}})
    result = materialize(project, raise_on_error=True)
    assert result.success
    (table,) = ready_tables(project)
    assert table.rows_embedded == 3
