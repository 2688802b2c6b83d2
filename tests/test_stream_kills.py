"""The stream worker as a real process against the real NATS server: SIGKILL at a random
moment mid-run loses and duplicates nothing once a new worker takes over, and SIGTERM finishes
the batch in hand and exits 0."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from jammi.app.facade import Jammi
from jammi.tables.catalog import Catalog
from tests.conftest import REPO
from tests.stream_support import event, stream_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

MALFORMED = {7, 23}


def _start(project, tmp_path, log_name: str) -> tuple[subprocess.Popen, object]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
           "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    log = open(tmp_path / log_name, "w")  # noqa: SIM115 - closed by the test
    proc = subprocess.Popen([sys.executable, "-m", "jammi_assets.cli", "--project", str(project.path),
                             "stream", "news_titles", "--status-every", "1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    return proc, log


def _wait(predicate, timeout: float, what: str, proc=None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the worker exited ({proc.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _version(project) -> int:
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="news_titles") if catalog.exists() else None
    return -1 if rec is None else catalog.current_version(rec).version


def test_sigkill_mid_run_loses_and_duplicates_nothing_and_sigterm_exits_0(tmp_path, stream):
    project = stream_project(tmp_path, stream, max_batch=4, max_wait_ms=100, ack_wait_s=3)
    total = 60
    payloads = [event(i) for i in range(total)]
    for i in MALFORMED:
        payloads[i] = b'{"id": ' + str(i).encode() + b', "title": "x", "topic": "gossip"}'
    stream.publish(payloads[:30])
    first, log1 = _start(project, tmp_path, "worker1.log")
    try:
        _wait(lambda: _version(project) >= 1, 180, "the first committed batches", first)
        stream.publish(payloads[30:])
        time.sleep(random.uniform(0.0, 0.5))
        first.send_signal(signal.SIGKILL)  # wherever it is: fetching, embedding, committing, acking
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        log1.close()
    second, log2 = _start(project, tmp_path, "worker2.log")
    jammi = Jammi(project)

    def all_rows() -> bool:
        if _version(project) < 0:
            return False
        return int(jammi.sql("SELECT count(*) AS n FROM jammi.news_titles_embeddings")["n"][0]) >= total - 2

    try:
        _wait(all_rows, 180, "every good event in the table", second)
        _wait(lambda: len(stream.dead_letters()) >= len(MALFORMED), 30, "the dead letters", second)
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
    finally:
        if second.poll() is None:
            second.kill()
        log2.close()
    counts = jammi.sql("SELECT count(*) AS n, count(DISTINCT _row_id) AS d FROM jammi.news_titles_embeddings")
    assert (int(counts["n"][0]), int(counts["d"][0])) == (total - len(MALFORMED),) * 2  # no loss, no dup
    rows = set(jammi.sql("SELECT _row_id FROM jammi.news_titles_embeddings")["_row_id"])
    assert rows == {str(i) for i in range(total) if i not in MALFORMED}
    dead = stream.dead_letters()
    assert sorted(seq for seq, _ in dead) == sorted(i + 1 for i in MALFORMED)  # once each
    out = (tmp_path / "worker2.log").read_text()
    assert "SIGTERM: finishing the batch in hand" in out and "stopped after" in out
