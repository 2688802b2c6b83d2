"""Pool slots and signals around a real `jammi materialize` on an instance configured like the
repo's dagster.yaml (pool default limit 1): a SIGKILLed run's slot is freed by the next run, a
run waiting for a live holder sleeps and names it, and SIGTERM or SIGINT at any stage ends the
command within seconds with one line, its run failed and its slots free."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import psutil
import pytest

from jammi_assets import run_guard
from tests.conftest import REPO, write_project

pytestmark = pytest.mark.slow

POOL = "embedding_model"
ROWS = 120


@pytest.fixture
def setup(tmp_path: Path, monkeypatch):
    """(project, DAGSTER_HOME, instance): the repo's dagster.yaml as is, in a temp home; the
    test opens the same instance (its storage paths are relative to the home)."""
    data = tmp_path / "items.csv"
    data.write_text("id,title,body\n" + "".join(
        f'{k},"Item {k}","A long description of item {k} with enough words to take a moment"\n'
        for k in range(ROWS)), encoding="utf-8")
    project = write_project(tmp_path / "project", {
        "items": {"kind": "csv", "path": str(data), "key": "id",
                  "columns": {"id": "int", "title": "str", "body": "str"}}},
        {"items": {"source": "items", "text_columns": ["title", "body"]}})
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.chdir(home)
    instance = dg.DagsterInstance.from_config(str(home))
    yield project, home, instance
    instance.dispose()


def start(project, home: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "DAGSTER_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "jammi_assets.cli", "materialize", "--project",
                             str(project.path)], cwd=REPO, env=env, stdout=out.open("w"),
                            stderr=subprocess.STDOUT)


def pool_info(instance: dg.DagsterInstance):
    storage = instance.event_log_storage
    if POOL not in storage.get_concurrency_keys():
        return None
    return storage.get_concurrency_info(POOL)


def holders(instance) -> set[str]:
    info = pool_info(instance)
    return {s.run_id for s in info.claimed_slots} if info else set()


def queued(instance) -> set[str]:
    info = pool_info(instance)
    return {p.run_id for p in info.pending_steps} if info else set()


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {what}"
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen, sig: int, within: float = 10.0) -> float:
    t0 = time.monotonic()
    proc.send_signal(sig)
    proc.wait(timeout=within)
    return time.monotonic() - t0


def status(instance, run_id: str) -> dg.DagsterRunStatus:
    return instance.get_run_by_id(run_id).status


def test_sigkill_leaks_no_slot_and_sigterm_while_holding_frees_it(setup, tmp_path):
    project, home, instance = setup
    killed = start(project, home, tmp_path / "killed.out")
    (dead_run,) = wait_for(lambda: holders(instance), killed, what="the first run holds the slot")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert holders(instance) == {dead_run}  # what SIGKILL leaves behind
    assert status(instance, dead_run) == dg.DagsterRunStatus.STARTED

    termed = start(project, home, tmp_path / "termed.out")
    (live_run,) = wait_for(lambda: holders(instance) - {dead_run}, termed,
                           what="the second run takes the freed slot")
    took = stop(termed, signal.SIGTERM)
    out = (tmp_path / "termed.out").read_text()
    assert f"freed pool slot(s) of run {dead_run} ({POOL}): its jammi process (pid {killed.pid}) " \
           "is gone; marked it failed" in out
    assert termed.returncode == 128 + signal.SIGTERM, out
    assert took < 10, out
    assert out.strip().splitlines()[-1] == (
        f"error: interrupted by SIGTERM: run {live_run} is FAILURE; its pool slots are free")
    assert "Traceback" not in out and "Exception ignored" not in out, out
    assert status(instance, dead_run) == dg.DagsterRunStatus.FAILURE
    assert status(instance, live_run) == dg.DagsterRunStatus.FAILURE
    assert not holders(instance) and not queued(instance)

    env = {**os.environ, "DAGSTER_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "jammi_assets.cli", "materialize", "--project",
                           str(project.path)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "materialized 6 asset(s)" in done.stdout
    assert not holders(instance) and not queued(instance)


def test_a_run_waiting_for_a_live_holder_sleeps_names_it_and_stops_on_sigint(setup, tmp_path):
    """The holder is a run another tool started (no jammi/pid tag): it is left alone."""
    project, home, instance = setup
    holder = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name="other_tool", run_id=holder,
                                   status=dg.DagsterRunStatus.STARTED))
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default(POOL)
    assert storage.claim_concurrency_slot(POOL, holder, "its_step").is_claimed

    waiting = start(project, home, tmp_path / "waiting.out")
    (run_id,) = wait_for(lambda: queued(instance) - {holder}, waiting, what="the run queues")
    wait_for(lambda: "slot held by run" in (tmp_path / "waiting.out").read_text(), waiting,
             timeout=10, what="the waiting line")
    cpu = psutil.Process(waiting.pid).cpu_percent(interval=3.0)
    assert cpu < 20, f"a run waiting for a slot uses {cpu}% CPU"
    took = stop(waiting, signal.SIGINT)
    out = (tmp_path / "waiting.out").read_text()
    assert f"  items_embeddings             waiting for pool {POOL} (limit 1): slot held by run " \
           f"{holder} (STARTED, not a jammi run); if it is dead, terminate it in the Dagster UI and " \
           "this run goes on; Ctrl-C to stop" in out
    assert waiting.returncode == 128 + signal.SIGINT, out
    assert took < 10, out
    assert out.strip().splitlines()[-1] == (
        f"error: interrupted by SIGINT: run {run_id} is FAILURE; its pool slots are free")
    assert status(instance, run_id) == dg.DagsterRunStatus.FAILURE
    assert holders(instance) == {holder} and queued(instance) == {holder}  # left alone
    assert status(instance, holder) == dg.DagsterRunStatus.STARTED


def test_sigterm_while_loading_ends_at_once_with_one_line(setup, tmp_path):
    project, home, instance = setup
    proc = start(project, home, tmp_path / "loading.out")
    time.sleep(1.0)  # importing pandas, Dagster, torch
    took = stop(proc, signal.SIGTERM)
    out = (tmp_path / "loading.out").read_text()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert took < 5, out
    assert out.strip().splitlines()[-1].startswith("error: interrupted by SIGTERM"), out
    assert "Traceback" not in out
    assert not instance.get_runs()


def _dead_process_tag() -> str:
    proc = subprocess.Popen(["sleep", "60"])
    me = psutil.Process(proc.pid)
    tag = f"{socket.gethostname()}:{proc.pid}:{me.create_time():.3f}"
    proc.kill()
    proc.wait()
    return tag


def test_clear_dead_runs_frees_only_what_can_never_be_given_back(setup):
    _, _, instance = setup
    storage = instance.event_log_storage
    storage.set_concurrency_slots(POOL, 3)
    storage.set_concurrency_slots("other_pool", 1)
    dead_tag = _dead_process_tag()
    runs = {
        "dead_holder": (dg.DagsterRunStatus.STARTED, {run_guard.PID_TAG: dead_tag}),
        "live_holder": (dg.DagsterRunStatus.STARTED, {run_guard.PID_TAG: run_guard.process_tag()}),
        "untagged_holder": (dg.DagsterRunStatus.STARTED, {}),
        "ended_holder": (dg.DagsterRunStatus.SUCCESS, {}),
        "dead_queued": (dg.DagsterRunStatus.STARTED, {run_guard.PID_TAG: dead_tag}),
        "dead_idle": (dg.DagsterRunStatus.NOT_STARTED, {run_guard.PID_TAG: dead_tag}),
    }
    ids = {}
    for name, (run_status, tags) in runs.items():
        ids[name] = str(uuid.uuid4())
        instance.add_run(dg.DagsterRun(job_name=name, run_id=ids[name], status=run_status, tags=tags))
    for name in ("dead_holder", "live_holder", "untagged_holder"):
        assert storage.claim_concurrency_slot(POOL, ids[name], "step").is_claimed
    assert storage.claim_concurrency_slot("other_pool", ids["ended_holder"], "step").is_claimed
    assert not storage.claim_concurrency_slot("other_pool", ids["dead_queued"], "step").is_claimed

    cleared = {c.run_id: c for c in run_guard.clear_dead_runs(instance)}

    assert set(cleared) == {ids["dead_holder"], ids["ended_holder"], ids["dead_queued"],
                            ids["dead_idle"]}
    assert cleared[ids["dead_holder"]].line() == (
        f"freed pool slot(s) of run {ids['dead_holder']} ({POOL}): its jammi process "
        f"(pid {dead_tag.split(':')[1]}) is gone; marked it failed")
    assert cleared[ids["ended_holder"]].line() == (
        f"freed pool slot(s) of run {ids['ended_holder']} (other_pool): the run already ended "
        "(SUCCESS)")
    assert cleared[ids["dead_idle"]].line().startswith(f"cleared run {ids['dead_idle']}: its jammi")
    for name in ("dead_holder", "dead_queued", "dead_idle"):
        assert instance.get_run_by_id(ids[name]).status == dg.DagsterRunStatus.FAILURE
    for name in ("live_holder", "untagged_holder"):
        assert instance.get_run_by_id(ids[name]).status == dg.DagsterRunStatus.STARTED
    assert {s.run_id for s in storage.get_concurrency_info(POOL).claimed_slots} == {
        ids["live_holder"], ids["untagged_holder"]}
    assert not storage.get_concurrency_info("other_pool").claimed_slots
    assert not storage.get_concurrency_info("other_pool").pending_steps
    assert run_guard.clear_dead_runs(instance) == []  # nothing left to clear


SWALLOWER = """
import time
from jammi_assets import interrupts
interrupts.install()
ready = False
with interrupts.on_hard_stop(lambda: "settled by the watchdog"):
    while True:
        try:
            if not ready:
                print("ready", flush=True)
                ready = True
            time.sleep(0.05)
        except BaseException:
            pass  # code that swallows every interrupt
"""


@pytest.mark.parametrize("second", [None, signal.SIGINT])
def test_the_watchdog_ends_a_process_that_swallows_the_interrupt(second):
    """GRACE_SECONDS after SIGTERM (at once after a second signal) the process ends anyway,
    having run the cleanup the runner registers (marking its run failed, freeing its slots)."""
    from jammi_assets.interrupts import GRACE_SECONDS

    proc = subprocess.Popen([sys.executable, "-c", SWALLOWER], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    if second:
        time.sleep(0.5)
        proc.send_signal(second)
    _, err = proc.communicate(timeout=GRACE_SECONDS + 5)
    took = time.monotonic() - t0
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err == ("error: interrupted by SIGTERM: settled by the watchdog (stopped without waiting "
                   "for the step)\n")
    if second:
        assert took < 2
    else:
        assert GRACE_SECONDS - 0.5 < took < GRACE_SECONDS + 3


WRAPPER = """
import os, signal, time
import jammi.cli as engine
from jammi_assets import cli

def main(**_):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except BaseException:
        raise ValueError("a library turned the signal into its own error") from None

engine.main = main
cli.main()
"""


def test_a_signal_a_library_turned_into_its_own_error_still_ends_with_one_line():
    """SIGTERM while pydantic built a model at import time came out as pydantic's SchemaError
    (a traceback and exit status 1): after a signal, whatever error ends the command is the
    signal's."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert proc.stderr == "error: interrupted by SIGTERM\n"
