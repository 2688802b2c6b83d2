"""The storage layer (jammi.store): one set of calls for a local folder, an S3 prefix (a real
SeaweedFS server, tests/s3_server.py) and a GCS prefix (the gcp-storage-emulator,
tests/gcs_server.py, reached through STORAGE_EMULATOR_HOST): an object is written whole or not
at all, read back seekable, listed, sized and deleted; a sidecar is fetched once into the
bounded cache and fetched again when the object under its name changes; DuckDB reads the URLs.
An unreachable S3, GCS or Azure store is one line naming it."""

from __future__ import annotations

import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jammi import store
from jammi.errors import ArtifactError
from jammi.tables.versions import FileRef, Version, check_files
from tests.conftest import new_bucket

SERVERS = {"s3": "s3_env", "gs": "gcs_env"}  # URL scheme -> the fixture of its test server


def _prefix(request, scheme: str) -> str:
    """A prefix in a fresh bucket of the `scheme` test server, its address in the environment."""
    return f"{scheme}://{new_bucket(request.getfixturevalue(SERVERS[scheme]), 'store')}/prefix"


@pytest.fixture(params=list(SERVERS))
def url_prefix(request):
    """The same tests over an S3 prefix and a GCS prefix."""
    return _prefix(request, request.param)


@pytest.fixture(params=["local", *SERVERS])
def root(request, tmp_path, monkeypatch):
    """The same tests over a local folder, an S3 prefix and a GCS prefix."""
    if request.param == "local":
        monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))
        return tmp_path / "artifacts"
    return _prefix(request, request.param)


def test_urls_are_told_from_local_paths(tmp_path):
    assert store.is_url("s3://bucket/key") and store.is_url("gs://b/k") and store.is_url("az://c/k")
    assert not store.is_url(str(tmp_path)) and not store.is_url(tmp_path) and not store.is_url("s3:/x")
    assert store.join("s3://b/p/", "jammi_db", "t.parquet") == "s3://b/p/jammi_db/t.parquet"
    assert store.join(tmp_path, "jammi_db", "t.parquet") == tmp_path / "jammi_db" / "t.parquet"
    assert store.name_of("s3://b/p/t.parquet") == "t.parquet"
    assert store.parent_of("s3://b/p/t.parquet") == "s3://b/p"


def test_write_read_list_delete(root):
    store.make_dirs(store.join(root, "jammi_db"))
    table = pa.table({"_row_id": ["a", "b", "c"], "x": [1.0, 2.0, 3.0]})
    seg = store.join(root, "jammi_db", "t.v00001-abcd.parquet")
    store.write_object(seg, lambda path: pq.write_table(table, path))
    store.write_text(store.join(root, "jammi_db", "t.manifest.json"), '{"status": "ready"}')

    assert store.exists(seg) and not store.exists(store.join(root, "jammi_db", "nothing.parquet"))
    assert store.read_parquet(seg).equals(table)
    assert store.read_parquet(seg, columns=["x"]).column("x").to_pylist() == [1.0, 2.0, 3.0]
    pf = store.parquet_file(seg)
    assert pf.metadata.num_rows == 3 and pf.read_row_group(0, columns=["_row_id"]).num_rows == 3
    with store.open_read(seg) as handle:  # seekable: the footer is read from the end
        handle.seek(-4, os.SEEK_END)
        assert handle.read(4) == b"PAR1"
    assert store.read_text(store.join(root, "jammi_db", "t.manifest.json")) == '{"status": "ready"}'
    assert store.size(seg) == len(store.read_bytes(seg)) and store.size(store.join(root, "none")) is None
    assert [store.name_of(p) for p in store.listdir(store.join(root, "jammi_db"), "t.v*")] == [
        "t.v00001-abcd.parquet"]
    assert [store.name_of(p) for p in store.listdir(store.join(root, "jammi_db"))] == [
        "t.manifest.json", "t.v00001-abcd.parquet"]
    assert store.listdir(store.join(root, "no_such_folder")) == []

    assert store.delete(seg) is True and store.delete(seg) is False
    assert not store.exists(seg)


def test_a_failed_write_leaves_nothing(root):
    store.make_dirs(root)
    target = store.join(root, "half.parquet")

    def fails(path):
        with open(path, "wb") as out:
            out.write(b"PAR1 half of a file")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        store.write_object(target, fails)
    assert not store.exists(target)
    assert store.listdir(root) == []  # no temporary file beside it either
    if store.is_url(root):
        assert not any((store.cache_dir() / "spool").glob("*"))  # nor a spool file


def test_a_sidecar_is_fetched_once_and_again_when_replaced(url_prefix):
    root = url_prefix
    url = store.join(root, "jammi_db", "t.usearch")
    store.write_bytes(url, b"1" * 1000)
    first = store.local_copy(url)
    assert first.read_bytes() == b"1" * 1000 and first.is_relative_to(store.cache_dir())
    assert store.local_copy(url) == first  # the cached copy, no second download

    store.write_bytes(url, b"2" * 1200)  # same name, new object (a repaired sidecar)
    second = store.local_copy(url)
    assert second != first and second.read_bytes() == b"2" * 1200

    with pytest.raises(FileNotFoundError):
        store.local_copy(store.join(root, "jammi_db", "missing.usearch"))


def test_the_cache_keeps_to_its_bound(url_prefix, monkeypatch):
    root = url_prefix
    monkeypatch.setenv(store.CACHE_BYTES_ENV, "2500")
    copies = []
    for i in range(4):
        url = store.join(root, f"s{i}.usearch")
        store.write_bytes(url, bytes([i]) * 1000)
        copies.append(store.local_copy(url))
    kept = sorted(p.name for p in (store.cache_dir() / "objects").iterdir())
    assert kept == sorted(p.name for p in copies[-2:])  # the two most recent fit in 2,500 bytes
    assert copies[-1].read_bytes() == bytes([3]) * 1000


def test_duckdb_reads_the_urls(root):
    store.make_dirs(store.join(root, "jammi_db"))
    for i in range(2):
        store.write_object(store.join(root, "jammi_db", f"seg{i}.parquet"),
                           lambda path, i=i: pq.write_table(pa.table({"_row_id": [f"{i}a", f"{i}b"]}), path))
    con = duckdb.connect()
    files = [str(store.join(root, "jammi_db", f"seg{i}.parquet")) for i in range(2)]
    store.register_duckdb(con, files)
    got = con.execute("SELECT parse_filename(filename) AS f, _row_id FROM read_parquet(?, filename = true) "
                      "ORDER BY _row_id", [files]).fetchall()
    assert got == [("seg0.parquet", "0a"), ("seg0.parquet", "0b"), ("seg1.parquet", "1a"),
                   ("seg1.parquet", "1b")]


@pytest.mark.parametrize("url_prefix", ["s3"], indirect=True)  # the GCS emulator serves one request at a time
def test_duckdb_threads_share_one_object_handle(url_prefix):
    """DuckDB reads one Parquet object from several threads through one handle (seek, then
    read): each thread's position is its own, so every row group decodes (with a shared
    position, a thread's seek moved another's read and footers failed to decode)."""
    import numpy as np

    url = store.join(url_prefix, "jammi_db", "wide.parquet")
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((20_000, 32), dtype=np.float32)
    table = pa.table({"_row_id": [str(i) for i in range(len(vectors))],
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 32)})
    store.write_object(url, lambda path: pq.write_table(table, path, row_group_size=500))
    con = duckdb.connect(config={"threads": 8})
    store.register_duckdb(con, [url])
    for _ in range(5):
        got = con.execute("SELECT count(*), sum(CAST(_row_id AS BIGINT)), sum(embedding[1]) "
                          "FROM read_parquet(?)", [url]).fetchone()
        assert got[0] == 20_000 and got[1] == sum(range(20_000))
        assert got[2] == pytest.approx(float(vectors[:, 0].sum(dtype=np.float64)), rel=1e-4)


def test_an_unreachable_store_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-never-shown")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ArtifactError) as err:
        store.read_bytes("s3://bucket/key.parquet")
    assert "s3://bucket/key.parquet" in str(err.value) and "secret-never-shown" not in str(err.value)


def test_a_gcs_endpoint_comes_from_storage_emulator_host(monkeypatch):
    """Google's client libraries' convention: `host:port` is plain http, with anonymous
    credentials; without it, Google's default credentials and no endpoint override."""
    monkeypatch.delenv(store.GCS_RETRY_ENV, raising=False)
    monkeypatch.setenv(store.GCS_EMULATOR_ENV, "127.0.0.1:9023")
    options = store._gcs_options()
    assert (options["endpoint_override"], options["scheme"], options["anonymous"]) == (
        "127.0.0.1:9023", "http", True)
    assert options["retry_time_limit"].total_seconds() == store.DEFAULT_GCS_RETRY_S
    monkeypatch.setenv(store.GCS_EMULATOR_ENV, "https://gcs.internal:8443/")
    assert store._gcs_options()["scheme"] == "https"
    monkeypatch.delenv(store.GCS_EMULATOR_ENV)
    assert set(store._gcs_options()) == {"retry_time_limit"}
    monkeypatch.setenv(store.GCS_RETRY_ENV, "soon")
    with pytest.raises(ArtifactError, match="JAMMI_GCS_RETRY_S='soon' is not a number of seconds"):
        store.filesystem("gs://bucket/key")


def test_an_unreachable_gcs_store_is_named(monkeypatch):
    monkeypatch.setenv(store.GCS_EMULATOR_ENV, "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv(store.GCS_RETRY_ENV, "1")
    with pytest.raises(ArtifactError) as err:
        store.read_bytes("gs://bucket/key.parquet")
    message = str(err.value)
    assert message.startswith("cannot open gs://bucket/key.parquet: ") and "\n" not in message
    assert "Could not connect" in message


def test_az_urls_name_their_container_and_account(monkeypatch):
    monkeypatch.delenv(store.AZURE_ACCOUNT_ENV, raising=False)
    assert store.azure_account("box@acct.dfs.core.windows.net") == "acct"
    with pytest.raises(ValueError, match="no storage account: write az://box@ACCOUNT"):
        store.azure_account("box")
    with pytest.raises(ArtifactError, match="cannot reach az://box: no storage account"):
        store.read_bytes("az://box/key.parquet")
    monkeypatch.setenv(store.AZURE_ACCOUNT_ENV, "other")
    assert store.azure_account("box") == "other"  # az://box/...: the account from the environment
    assert store.azure_account("box@acct.blob.core.windows.net") == "acct"  # the URL's own account first


def test_an_azure_store_without_credentials_is_named(monkeypatch):
    """No Azure credential here (the AZURE_* variables cleared, no `az` login, no managed
    identity): one line naming the store, where pyarrow's Azure client alone would abort the
    process (opening a file) or raise a bare ArrowException (looking one up)."""
    for name in [k for k in os.environ if k.startswith("AZURE_")]:
        monkeypatch.delenv(name)
    for url, doing in [("az://box@jammiacct.dfs.core.windows.net/t/key.parquet", store.read_bytes),
                       ("abfss://box@jammiacct.dfs.core.windows.net/t", store.listdir)]:
        with pytest.raises(ArtifactError) as err:
            doing(url)
        message = str(err.value)
        assert message.startswith(f"cannot reach {url.split('/t')[0]}: ") and "\n" not in message
        assert "DefaultAzureCredential" in message


def test_a_killed_writers_previous_copy_is_swept_once_it_is_old(url_prefix, monkeypatch):
    """`committing` keeps a copy of the object it replaces (`.NAME.PID.previous`) until its
    commit ends; a writer killed in between leaves it. The next commit of that frame removes
    such copies once they are older than any live commit (PREVIOUS_KEPT_S), and no other."""
    from jammi import shared

    root = url_prefix
    target = store.join(root, "frames", "validated_items.parquet")
    store.write_bytes(target, b"frame")
    left = store.join(root, "frames", ".validated_items.parquet.4242.previous")
    other = store.join(root, "frames", ".validated_items_2.parquet.4242.previous")
    store.write_bytes(left, b"old")
    store.write_bytes(other, b"old")
    assert shared.sweep_previous(str(target)) == []  # young: may be a live writer's
    monkeypatch.setattr(shared, "PREVIOUS_KEPT_S", 0.0)
    assert shared.sweep_previous(str(target)) == [left]
    assert not store.exists(left) and store.exists(other) and store.read_bytes(target) == b"frame"


def test_a_version_file_on_a_store_that_does_not_answer_is_not_called_missing(monkeypatch, tmp_path):
    """While the store is down a version's file is neither missing nor damaged: the error
    carries what the store said and suggests no repair; a file that is gone still names the
    fix (bench/object_store_faults.py's S3 outage)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-never-shown")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))
    version = Version("t", 1, (FileRef("t.parquet", 2),), (), 2)
    with pytest.raises(ArtifactError) as down:
        check_files("s3://bucket/tables", version, "items")
    assert "cannot open s3://bucket/tables/t.parquet" in str(down.value)
    assert "try again once the store answers" in str(down.value)
    assert "--repair" not in str(down.value) and "missing" not in str(down.value)
    with pytest.raises(ArtifactError) as gone:
        check_files(tmp_path / "tables", version, "items")
    assert "t.parquet, which is missing" in str(gone.value)
    assert "jammi verify items --repair" in str(gone.value)
