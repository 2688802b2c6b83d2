"""What a file sensor remembers between ticks, and what it decides on each: plain data and
functions (the Dagster sensor in sensors.source_files only reads files, looks up runs and turns
the decisions into run requests).

Per source, per watched group of files (the whole source, a `{date}` partition or one file):

- `seen`: the fingerprint at the previous tick. A group whose fingerprint differs from it is
  still being written and waits; it is requested once two ticks in a row agree.
- `done`: the fingerprint that a run materialized successfully. Only a successful run moves it.
- `request`: the run asked for (run key, fingerprint, attempt, when), until that run ends.
- `failures` / `retry_at`: after a failed run the same files are requested again, with a new
  run key, once `retry_at` has passed (1, 2, 4 ... minutes, at most an hour); a change to the
  files resets the count. A run that Dagster will retry (`run_retries`) is waited for, and a
  requested run not found after LAUNCH_GRACE_S counts as failed.

The first tick that sees a source records what is there as done and requests nothing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

BACKOFF_BASE_S = 60.0
BACKOFF_MAX_S = 3600.0
LAUNCH_GRACE_S = 600.0


class RunState(Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RUNNING = "running"  # queued, started, or failed with a retry coming
    MISSING = "missing"  # no run carries the request's key (yet)


def backoff_s(failures: int) -> float:
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(failures - 1, 0))


@dataclass
class Request:
    run_key: str
    fingerprint: str
    attempt: int
    at: float


@dataclass
class Group:
    seen: str | None = None
    done: str | None = None
    request: Request | None = None
    failures: int = 0
    failed: str | None = None  # the fingerprint that failed
    retry_at: float | None = None

    @classmethod
    def load(cls, raw: dict) -> Group:
        request = raw.get("request")
        return cls(**{**raw, "request": Request(**request) if request else None})


@dataclass
class Decision:
    """One tick of one source: groups to request, new groups, and why others wait."""

    requests: list[tuple[str, Request]] = field(default_factory=list)
    new_groups: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    baseline: bool = False


def load_state(cursor: dict, source: str) -> dict[str, Group] | None:
    """The source's groups from a decoded cursor; None when no tick has seen the source."""
    groups = cursor.get(source)
    return None if groups is None else {k: Group.load(v) for k, v in groups.items()}


def dump_state(groups: dict[str, Group]) -> dict:
    return {k: asdict(g) for k, g in sorted(groups.items())}


def run_key(source: str, group: str, fingerprint: str, attempt: int) -> str:
    return f"{source}:{group or '*'}:{fingerprint}:{attempt}"


def tick(source: str, state: dict[str, Group] | None, observed: dict[str, str],
         run_state, now: float) -> tuple[dict[str, Group], Decision]:
    """Decide one tick. `observed`: group -> fingerprint now; `run_state(run_key)` -> RunState."""
    decision = Decision()
    if state is None:
        decision.baseline = True
        decision.new_groups = sorted(observed)
        return {k: Group(seen=fp, done=fp) for k, fp in observed.items()}, decision
    groups = {k: g for k, g in state.items() if k in observed or g.request is not None}
    for key in sorted(observed):
        fp = observed[key]
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group()
            decision.new_groups.append(key)
        _settle(group, run_state, now)
        stable, group.seen = group.seen == fp, fp
        if group.request is not None:
            decision.waiting.append(f"{key or 'files'}: waiting for run {group.request.run_key}")
            continue
        if fp == group.done:
            continue
        if not stable:
            decision.waiting.append(f"{key or 'files'}: still changing")
            continue
        if group.failed is not None and group.failed != fp:
            group.failures, group.failed, group.retry_at = 0, None, None
        if group.retry_at is not None and now < group.retry_at:
            decision.waiting.append(f"{key or 'files'}: {group.failures} failed run(s); next "
                                    f"request in {group.retry_at - now:.0f}s")
            continue
        attempt = group.failures + 1
        group.request = Request(run_key(source, key, fp, attempt), fp, attempt, now)
        decision.requests.append((key, group.request))
    for key in [k for k in groups if k not in observed]:
        _settle(groups[key], run_state, now)
        if groups[key].request is None:
            del groups[key]
    return groups, decision


def _settle(group: Group, run_state, now: float) -> None:
    request = group.request
    if request is None:
        return
    state = run_state(request.run_key)
    if state == RunState.RUNNING or (state == RunState.MISSING and now - request.at < LAUNCH_GRACE_S):
        return
    group.request = None
    if state == RunState.SUCCEEDED:
        group.done, group.failures, group.failed, group.retry_at = request.fingerprint, 0, None, None
    else:
        group.failures += 1
        group.failed = request.fingerprint
        group.retry_at = now + backoff_s(group.failures)
