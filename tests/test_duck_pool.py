"""The catalog's reused DuckDB instances: lent again only as new, written files checkpointed
before they are let go, and never after a setting such as the SQL sandbox's changed."""

from __future__ import annotations

import duckdb
import pytest

from jammi.tables import duck


@pytest.fixture(autouse=True)
def empty_pool():
    duck._idle.clear()
    yield
    duck._idle.clear()


def test_an_instance_given_back_clean_is_lent_again_with_nothing_attached(tmp_path):
    con = duck.take()
    con.execute(f"ATTACH '{tmp_path / 'state.duckdb'}' AS state")
    con.execute("CREATE TABLE state.t AS SELECT 42 AS a")
    con.execute("USE state")
    duck.give_back(con)
    again = duck.take()
    assert again is con
    names = {r[0] for r in again.execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal")
             .fetchall()}
    assert names == {"memory"}
    # the written file was checkpointed and let go: another process-level open sees the row
    with duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True) as reader:
        assert reader.execute("SELECT a FROM t").fetchall() == [(42,)]


@pytest.mark.parametrize("spoil", ["SET enable_external_access = false", "CREATE TABLE t AS SELECT 1",
                                   "CREATE TEMP VIEW v AS SELECT 1", "SET threads = 1"])
def test_an_instance_left_changed_is_closed_not_lent(spoil):
    con = duck.take()
    con.execute(spoil)
    duck.give_back(con)
    assert duck._idle == []
    with pytest.raises(duckdb.ConnectionException):
        con.execute("SELECT 1")
    assert duck.take() is not con


def test_a_block_that_raises_closes_its_instance():
    con = duck.take()
    with pytest.raises(RuntimeError), duck.lent(con):
        raise RuntimeError("boom")
    assert duck._idle == []
    with pytest.raises(duckdb.ConnectionException):
        con.execute("SELECT 1")


def test_the_pool_keeps_at_most_max_idle():
    cons = [duck.take() for _ in range(duck.MAX_IDLE + 2)]
    for con in cons:
        duck.give_back(con)
    assert len(duck._idle) == duck.MAX_IDLE
