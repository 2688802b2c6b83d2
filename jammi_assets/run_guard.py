"""Pool slots on the local instance, kept honest around `jammi materialize`.

A run that `jammi materialize` starts carries the tag `jammi/pid` = "host:pid:create_time" of its
process. Before a new run starts, and every few seconds while one waits for a slot, runs whose
slots can never be given back are cleared: an unfinished jammi run whose process is gone (killed)
is marked failed and its slots and queued claims are freed; a finished or deleted run still
holding slots has them freed. An unfinished run without the tag (started by `dagster dev`, say)
is left alone: nothing here can tell whether it is alive.

Waiting for a slot sleeps between checks (Dagster 1.13's in-process executor re-checks without
sleeping: `InstanceConcurrencyContext.interval_to_next_pending_claim_check` returns
`min([0, ...])`, which is never positive), says which run holds the slot, and honours SIGINT and
SIGTERM, which Dagster's loop only notes while a step waits for a slot."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
import psutil

from jammi_assets import interrupts
from jammi_assets.dagster_private import (
    PARENT_RUN_ID_TAG,
    InstanceConcurrencyContext,
    check_captured_interrupt,
    in_process,
)

PID_TAG = "jammi/pid"
POLL_SECONDS = 1.0  # a blocked step re-checks its slot this often
REAP_EVERY = 5.0  # ... and looks for dead holders this often
REPORT_EVERY = 60.0  # ... and says again who holds the slot this often
# runs that started (or were launched) and have not ended; a queued run holds no slot yet
UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
              dg.DagsterRunStatus.SUSPENDED, dg.DagsterRunStatus.CANCELING]


def process_tag(pid: int | None = None) -> str:
    """This process (or process `pid`), as the `jammi/pid` tag names it."""
    me = psutil.Process(pid)
    return f"{socket.gethostname()}:{me.pid}:{me.create_time():.3f}"


def jammi_process(run: dg.DagsterRun) -> str | None:
    """The `jammi/pid` tag of a run a jammi process executes; None for a re-execution (from
    the UI or run retries), which inherits its parent's tags but runs elsewhere."""
    return None if PARENT_RUN_ID_TAG in run.tags else run.tags.get(PID_TAG)


def _pid(tag: str) -> str:
    parts = tag.rsplit(":", 2)
    return parts[1] if len(parts) == 3 else "?"


def process_alive(tag: str) -> bool | None:
    """Whether the process a `jammi/pid` tag names still runs; None when it cannot be told (a
    process of another host, a malformed tag)."""
    try:
        host, pid, created = tag.rsplit(":", 2)
        pid_n, created_t = int(pid), float(created)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        proc = psutil.Process(pid_n)
        if abs(proc.create_time() - created_t) > 0.01:
            return False  # the pid was reused by another process
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


@dataclass
class Cleared:
    run_id: str
    pools: list[str]
    reason: str
    marked_failed: bool

    def line(self) -> str:
        what = (f"freed pool slot(s) of run {self.run_id} ({', '.join(self.pools)})" if self.pools
                else f"cleared run {self.run_id}")
        return f"{what}: {self.reason}" + ("; marked it failed" if self.marked_failed else "")


def _slot_users(instance: dg.DagsterInstance) -> dict[str, set[str]]:
    """run id -> pools where it holds a slot or has a claim queued."""
    storage = instance.event_log_storage
    users: dict[str, set[str]] = {}
    if not storage.supports_global_concurrency_limits:
        return users
    keys = sorted(storage.get_concurrency_keys())
    for key, info in storage.get_concurrency_infos(keys).items():
        for run_id in {s.run_id for s in info.claimed_slots} | {p.run_id for p in info.pending_steps}:
            users.setdefault(run_id, set()).add(key)
    return users


def clear_dead_runs(instance: dg.DagsterInstance, only: set[str] | None = None) -> list[Cleared]:
    """Free the slots (and queued claims) of runs that can never give them back, marking dead
    jammi runs failed; `only` limits the look to those run ids."""
    users = _slot_users(instance)
    candidates = set(users)
    if only is None:
        candidates |= {r.run_id for r in instance.get_runs(dg.RunsFilter(statuses=UNFINISHED), limit=500)
                       if jammi_process(r)}
    else:
        candidates &= only
    cleared = []
    me = process_tag()
    for run_id in sorted(candidates):
        run = instance.get_run_by_id(run_id)
        pools = sorted(users.get(run_id, ()))
        if run is None:
            reason, mark = "the run no longer exists", False
        elif run.is_finished:
            if not pools:
                continue
            reason, mark = f"the run already ended ({run.status.value})", False
        else:
            tag = jammi_process(run)
            if tag is None or tag == me or process_alive(tag) is not False:
                continue
            reason, mark = f"its jammi process (pid {_pid(tag)}) is gone", True
        if mark:
            instance.report_run_failed(run, message=(
                f"The jammi process of this run (pid {_pid(run.tags[PID_TAG])}) ended without "
                "finishing it (killed?); marked failed by a later `jammi materialize`."))
        if pools:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        cleared.append(Cleared(run_id, pools, reason, mark))
    return cleared


def _holders(instance: dg.DagsterInstance, pool: str) -> tuple[set[str], int | None]:
    """(runs holding a slot of `pool` or assigned one they have not taken yet, the pool's limit)."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    claimed = {s.run_id for s in info.claimed_slots if s.run_id}
    assigned = {p.run_id for p in info.pending_steps if p.assigned_timestamp is not None}
    return claimed | assigned, info.limit


def describe_holders(instance: dg.DagsterInstance, pool: str, me: str) -> str:
    users, limit = _holders(instance, pool)
    holders = sorted(users - {me})
    if not holders:
        return f"waiting for a slot of pool {pool} (limit {limit})"
    described, foreign = [], False
    for run_id in holders:
        run = instance.get_run_by_id(run_id)
        tag = jammi_process(run) if run else None
        foreign = foreign or tag is None
        who = (f"jammi pid {_pid(tag)}" if tag else "not a jammi run") if run else "unknown run"
        status = run.status.value if run else "?"
        described.append(f"{run_id} ({status}, {who})")
    hint = "; if it is dead, terminate it in the Dagster UI and this run goes on" if foreign else ""
    return (f"waiting for pool {pool} (limit {limit}): slot held by run "
            f"{', '.join(described)}{hint}; Ctrl-C to stop")


def _interrupt_if_asked() -> None:
    if check_captured_interrupt():
        interrupts.taken()
        raise dg.DagsterExecutionInterruptedError("interrupted while waiting for a pool slot")


def waiting_context(echo: Callable[[str], None]) -> type[InstanceConcurrencyContext]:
    """Dagster's instance concurrency context with a sleeping, talking, interruptible wait."""

    class WaitingConcurrencyContext(InstanceConcurrencyContext):
        def __init__(self, instance, dagster_run):
            super().__init__(instance, dagster_run)
            self._next_report: dict[str, float] = {}
            self._next_reap = 0.0

        def claim(self, concurrency_key: str, step_key: str, step_priority: int = 0) -> bool:
            _interrupt_if_asked()
            if super().claim(concurrency_key, step_key, step_priority):
                if step_key in self._next_report:
                    echo(f"  {step_key:<28} got its slot of pool {concurrency_key}")
                    del self._next_report[step_key]
                return True
            now = time.time()
            ready_at = self._pending_timeouts.get(step_key)
            if ready_at is not None:
                self._pending_timeouts[step_key] = min(ready_at, now + POLL_SECONDS)
            if now >= self._next_reap:
                self._next_reap = now + REAP_EVERY
                users, _ = _holders(self._instance, concurrency_key)
                for c in clear_dead_runs(self._instance, only=users - {self._run_id}):
                    echo(f"  {step_key:<28} {c.line()}")
                    self._pending_timeouts[step_key] = now  # re-check at once
            if now >= self._next_report.get(step_key, 0.0):
                self._next_report[step_key] = now + REPORT_EVERY
                echo(f"  {step_key:<28} "
                     f"{describe_holders(self._instance, concurrency_key, self._run_id)}")
            return False

        def interval_to_next_pending_claim_check(self) -> float:
            _interrupt_if_asked()
            if not self._pending_claims:
                return 0.0
            now = time.time()
            waits = [self._pending_timeouts[k] - now for k in self._pending_claims
                     if k in self._pending_timeouts]
            return max(0.0, min(waits, default=0.0))

    return WaitingConcurrencyContext


@contextmanager
def sleeping_slot_waits(echo: Callable[[str], None]) -> Iterator[None]:
    """Within the block, in-process executions wait for pool slots as `waiting_context` does."""
    original = in_process.InstanceConcurrencyContext
    in_process.InstanceConcurrencyContext = waiting_context(echo)  # type: ignore[misc]  # the patch
    try:
        yield
    finally:
        in_process.InstanceConcurrencyContext = original  # type: ignore[misc]
