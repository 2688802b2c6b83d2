"""Hostile or careless input (issue 11, items 6 and 10): credentials never reach an error or
the event log, an alias bomb is refused at once, a glob never reads Jammi's own files, keys
equal after typing are duplicates, a broken JSON Lines row is named, and -k is bounded."""

from __future__ import annotations

import time
import uuid

import dagster as dg
import pandas as pd
import pytest

from jammi.errors import ConfigError, KeyIntegrityError, SearchError, SourceError
from jammi.ingest.extract import extract, source_files
from jammi.query.search import search
from jammi.redact import dsn_secrets, redact
from jammi.spec.project import load_project
from tests.conftest import PRODUCT_COLUMNS, failure_message, invoke_cli, materialize, write_project

SECRET = "SECRETPW"
PG_DSN = "postgresql://127.0.0.1:5432/test"
PIPELINE = {"products": {"source": "products", "text_columns": ["title", "body"]}}
ROWS = "id,title,body,price\n1,Red shoes,Trail runners,59.5\n2,Espresso,Steam wand,199\n"


def pg_source(dsn: str, table: str = "public.products") -> dict:
    return {"kind": "postgres", "dsn": dsn, "table": table, "key": "id", "columns": PRODUCT_COLUMNS}


def csv_source(path: str = "data/products.csv", **extra) -> dict:
    return {"kind": "csv", "path": path, "key": "id", "columns": PRODUCT_COLUMNS, **extra}


def postgres_or_skip():
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL at {PG_DSN} is unreachable: {str(err).strip().splitlines()[0]}")
    return psycopg


# --- credentials ------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("postgresql://postgres:SECRETPW@db:5432/x failed", "postgresql://postgres:***@db:5432/x failed"),
    ('missing "=" after "postgres:SECRETPW@host/db"', 'missing "=" after "postgres:***@host/db"'),
    ("host=db password=SECRETPW dbname=x", "host=db password=*** dbname=x"),
    ("host=db password='SECRET PW' dbname=x", "host=db password=*** dbname=x"),
    ("https://h/x?user=u&password=SECRETPW&a=1", "https://h/x?user=u&password=***&a=1"),
    ("source 'pg': table 'public.x' does not exist", "source 'pg': table 'public.x' does not exist"),
    ('server at "127.0.0.1", port 5432 failed', 'server at "127.0.0.1", port 5432 failed'),
    ("at 12:30@noon", "at 12:30@noon"),
])
def test_redact_masks_url_and_libpq_passwords(text, expected):
    assert redact(text) == expected


def test_redact_masks_expanded_values_but_not_short_ones():
    assert redact("could not reach h0st-42 at db", ["h0st-42", "db"]) == "could not reach *** at db"


def test_object_store_credentials_are_masked(monkeypatch):
    """The secrets of the AWS, Azure and GCS credential chains, from the environment or
    echoed in a connection string, never reach a message; an access key id is a name and
    stays, unless it has AWS's AKIA form."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-K7MDENG")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "jammi-reader")
    text = ("cannot read s3://b/k: signature for key jammi-reader and secret wJalrXUtnFEMI-K7MDENG; "
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0LWtleQ==;Endpoint=x "
            "https://acct.blob.core.windows.net/c?sv=2024&sig=abcDEF123%3D key AKIAIOSFODNN7EXAMPLE")
    assert redact(text) == (
        "cannot read s3://b/k: signature for key jammi-reader and secret ***; "
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=***;Endpoint=x "
        "https://acct.blob.core.windows.net/c?sv=2024&sig=*** key ***")


def test_a_store_error_never_shows_the_secret(monkeypatch):
    from jammi import store

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-K7MDENG")
    err = store._fail("s3://bucket/key", "read", OSError("AWS Error: bad signature wJalrXUtnFEMI-K7MDENG"))
    assert str(err) == "cannot read s3://bucket/key: AWS Error: bad signature ***"


def test_dsn_secrets_finds_the_password_however_the_dsn_is_written():
    assert dsn_secrets("postgresql://u:S%20PW@h/db") == ["S%20PW", "S PW"]
    assert dsn_secrets("postgres:SECRET PW@host/db") == ["SECRET PW", "SECRET PW"]
    assert dsn_secrets("host=h password='a b' user=u") == ["a b"]
    assert dsn_secrets("postgresql://h/db") == []
    assert dsn_secrets(None) == []


def test_literal_dsn_password_echoed_alone_is_masked(tmp_path):
    # psycopg echoes only the password here: 'unexpected spaces found in "SECRET PW"'
    pytest.importorskip("psycopg")
    project = write_project(tmp_path, {"products": pg_source("postgresql://postgres:SECRET PW@h/db")})
    with pytest.raises(SourceError) as err:
        extract(project, "products")
    assert "source 'products': PostgreSQL" in str(err.value)
    assert "SECRET" not in str(err.value)
    assert "***" in str(err.value)


@pytest.fixture
def cli_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run_materialization chdirs to DAGSTER_HOME; restored after
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("dsn", [
    f"postgres:{SECRET}@no-such-host/db",  # malformed: psycopg echoes the whole string
    f"postgresql://postgres:{SECRET}@127.0.0.1:1/test",  # nothing listens on port 1
])
def test_dsn_password_from_env_never_reaches_cli_or_event_log(cli_home, monkeypatch, dsn):
    pytest.importorskip("psycopg")
    monkeypatch.setenv("JAMMI_TEST_DSN", dsn)
    project = write_project(cli_home / "p", {"products": pg_source("${JAMMI_TEST_DSN}")})
    assert project.sources["products"].dsn == dsn

    with pytest.raises(SourceError) as err:
        extract(project, "products")
    assert "source 'products': PostgreSQL table 'public.products' failed" in str(err.value)
    assert SECRET not in str(err.value)

    out = invoke_cli(["--project", str(project.path), "materialize"])
    assert out.exit_code == 1
    assert "source 'products': PostgreSQL table 'public.products' failed" in out.output
    assert SECRET not in out.output

    result = materialize(project)
    assert not result.success
    assert "source 'products': PostgreSQL" in failure_message(result)
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures
    assert not [e.event_type_value for e in result.all_events if SECRET in dg.serialize_value(e)]


def test_dsn_with_password_from_env_still_reads_the_table(tmp_path, monkeypatch):
    psycopg = postgres_or_skip()
    table = f"public.jammi_redact_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int, title text, body text, price float)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 'a', 'b', 1.5), (2, 'c', 'd', 2)")
    try:
        # trust authentication ignores the password: the DSN is good, and carries a secret
        monkeypatch.setenv("JAMMI_TEST_DSN", f"postgresql://postgres:{SECRET}@127.0.0.1:5432/test")
        project = write_project(tmp_path, {"products": pg_source("${JAMMI_TEST_DSN}", table)})
        frame = extract(project, "products")
        assert frame["id"].tolist() == [1, 2]
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def test_expanded_value_is_masked_in_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("JAMMI_TEST_KEY", "hunter2-key")
    with pytest.raises(ConfigError) as err:
        write_project(tmp_path, {"products": csv_source(key="${JAMMI_TEST_KEY}")})
    assert "is not a declared column" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_expanded_file_location_stays_readable(tmp_path, monkeypatch):
    monkeypatch.setenv("JAMMI_TEST_DATA", str(tmp_path / "elsewhere"))
    project = write_project(tmp_path, {"products": csv_source("${JAMMI_TEST_DATA}/products.csv")})
    with pytest.raises(SourceError) as err:
        extract(project, "products")
    assert str(tmp_path / "elsewhere" / "products.csv") in str(err.value)


# --- YAML aliases -----------------------------------------------------------------------


BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
sources: {}
"""


def test_yaml_alias_bomb_is_refused_at_once(tmp_path):
    path = tmp_path / "jammi.yaml"
    path.write_text(BOMB, encoding="utf-8")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_project(path)
    assert time.perf_counter() - t0 < 0.5
    message = str(err.value)
    assert message.startswith(f"{path}: YAML aliases expand to more than 10000 extra nodes")
    assert "\n" not in message


def test_recursive_yaml_alias_is_refused(tmp_path):
    path = tmp_path / "jammi.yaml"
    path.write_text("sources: &s {loop: *s}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="recursive"):
        load_project(path)


def test_a_shared_quality_block_through_an_alias_still_loads(tmp_path):
    path = tmp_path / "jammi.yaml"
    path.write_text(
        "sources:\n"
        "  a: {kind: csv, path: a.csv, key: id, columns: {id: int},\n"
        "      quality: &quality {exact_duplicates: {max_rate: 0.2}}}\n"
        "  b: {kind: csv, path: b.csv, key: id, columns: {id: int}, quality: *quality}\n",
        encoding="utf-8",
    )
    project = load_project(path)
    assert project.sources["b"].quality.exact_duplicates.max_rate == 0.2


# --- globs ------------------------------------------------------------------------------


def test_glob_skips_the_artifact_directory_and_dagster_home(tmp_path):
    frame = pd.DataFrame({"id": [1], "title": ["t"], "body": ["b"], "price": [1.0]})
    for rel in ("data/products.parquet", "artifacts/frames/raw_products.parquet",
                "artifacts/frames/validated_products.parquet", ".dagster/storage/x.parquet"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(tmp_path / rel)
    project = write_project(tmp_path, {"products": csv_source("**/*.parquet", kind="parquet")})
    assert source_files(project, "products", project.sources["products"]) == [
        tmp_path / "data" / "products.parquet"]


def test_glob_matching_only_jammi_files_says_so(tmp_path):
    (tmp_path / "artifacts" / "frames").mkdir(parents=True)
    pd.DataFrame({"id": [1]}).to_parquet(tmp_path / "artifacts" / "frames" / "raw_products.parquet")
    project = write_project(tmp_path, {"products": csv_source("**/*.parquet", kind="parquet")})
    with pytest.raises(SourceError) as err:
        extract(project, "products")
    assert "source 'products': path '**/*.parquet' only matches Jammi's own files" in str(err.value)
    assert str(tmp_path / "artifacts") in str(err.value)


# --- keys equal after typing ------------------------------------------------------------


def test_keys_equal_after_coercion_are_duplicates(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "products.csv").write_text(
        "id,title,body,price\n01,a,b,1\n1,c,d,2\n2,e,f,3\n", encoding="utf-8")
    project = write_project(tmp_path, {"products": csv_source()})
    with pytest.raises(KeyIntegrityError) as err:
        extract(project, "products")
    assert ("key column 'id' has 1 duplicated key(s): '01' = '1' (the same int) x2; "
            "the run is refused") in str(err.value)


def test_text_keys_that_differ_only_in_spelling_stay_distinct(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "products.csv").write_text(
        "id,title,body,price\n01,a,b,1\n1,c,d,2\n", encoding="utf-8")
    columns = {**PRODUCT_COLUMNS, "id": "str"}
    project = write_project(tmp_path, {"products": csv_source(columns=columns)})
    assert extract(project, "products")["id"].tolist() == ["01", "1"]


# --- JSON Lines -------------------------------------------------------------------------


@pytest.mark.parametrize("bad, problem", [
    ('{"id": 2, "title": "b", "body": "x", "price": 1', "Expecting ',' delimiter"),
    ('[2, "b", "x", 1]', "a JSON list"),
])
def test_broken_jsonl_line_is_named(tmp_path, bad, problem):
    path = tmp_path / "data" / "products.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"id": 1, "title": "a", "body": "x", "price": 1}\n\n' + bad + "\n"
                    '{"id": 3, "title": "c", "body": "x", "price": 1}\n', encoding="utf-8")
    project = write_project(tmp_path, {"products": csv_source("data/products.jsonl", kind="jsonl")})
    with pytest.raises(SourceError) as err:
        extract(project, "products")
    message = str(err.value)
    assert message.startswith("source 'products': products.jsonl line 3 is not a JSON object")
    assert problem in message
    assert repr(bad) in message


# --- search -k --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("k", ["0", "10001", "-3"])
def test_search_k_out_of_range_is_a_usage_error(k):
    out = invoke_cli(["search", "products", "shoes", "-k", k])
    assert out.exit_code == 2
    assert "Invalid value for '-k'" in out.output
    assert "1<=x<=10000" in out.output


@pytest.mark.slow
def test_search_k_bound_in_the_engine_and_k_past_the_table_returns_every_row(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "products.csv").write_text(ROWS, encoding="utf-8")
    project = write_project(tmp_path, {"products": csv_source()}, PIPELINE)
    result = materialize(project)
    assert result.success, failure_message(result)
    with pytest.raises(SearchError, match="k must be between 1 and 10000"):
        search(project, "products", "shoes", k=10_001)
    for exact in (False, True):
        hits = search(project, "products", "shoes", k=10_000, exact=exact)
        assert sorted(hits["_row_id"]) == ["1", "2"]
