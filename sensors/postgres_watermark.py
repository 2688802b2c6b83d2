"""Sensors of PostgreSQL sources that declare a `watermark`.

`<source>_watermark_sensor` (one per source, unless it says `sensor: false`) asks the source for
its position (`max(<watermark>)`, `max(<deleted_at>)`, `count(*)`: the count moves on a hard
delete) and requests a run of the source's assets when it differs from the committed position.
It tracks the run it requested in its cursor; a run that fails (or is never launched) is
requested again on a later tick, after 1, 2, 4 ... minutes (at most an hour). A run that Dagster
will retry itself (`run_retries`) is waited for.

`postgres_watermark_commit` commits a source's pending watermark when the run that extracted it
succeeds (any run: the sensor's, the UI's or `jammi materialize`'s); the watermark sensor also
does so on its next tick, so a stopped commit sensor only delays the commit.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import dagster as dg

from jammi import keys
from jammi.ingest.watermark import (
    commit_watermark,
    committed_position,
    fingerprint,
    pending_run,
    probe,
)
from jammi.spec.project import Project

SOURCE_TAG = "jammi/source"
REQUEST_TAG = "jammi/watermark_request"
ATTEMPT_TAG = "jammi/watermark_attempt"
WILL_RETRY_TAG = "dagster/will_retry"  # set by Dagster on a failed run that run_retries will rerun
COMMIT_SENSOR = "postgres_watermark_commit"
INTERVAL_S = 60
BACKOFF_BASE_S = 60
BACKOFF_MAX_S = 3600
LAUNCH_GRACE_S = 600  # a requested run still not found after this long counts as failed


def now() -> float:
    return time.time()


def sensor_name(source: str) -> str:
    return f"{source}_watermark_sensor"


def watermark_sources(project: Project) -> list[str]:
    return [n for n, s in project.sources.items() if s.kind == "postgres" and s.watermark]


def backoff_s(failures: int) -> float:
    """Seconds to wait before requesting again after `failures` failed runs in a row."""
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(failures - 1, 0)))


def settle(instance: dg.DagsterInstance, project: Project,
           source: str) -> tuple[dg.DagsterRun | None, bool]:
    """Commit the source's pending watermark if the run that extracted it succeeded. Returns
    that run when it is still going (nothing is requested meanwhile), and whether it committed."""
    run_id = pending_run(project.artifact_dir, source)
    run = instance.get_run_by_id(run_id) if run_id else None
    if run is None:
        return None, False
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return None, commit_watermark(project.artifact_dir, source, run_id)
    return (None if run.is_finished else run), False


def evaluate(context: dg.SensorEvaluationContext, project: Project, source: str) -> dg.SensorResult:
    """One tick of the source's watermark sensor (see the module docstring)."""
    cursor = json.loads(context.cursor) if context.cursor else {}

    def skip(reason: str) -> dg.SensorResult:
        return dg.SensorResult(skip_reason=reason, cursor=json.dumps(cursor, sort_keys=True))

    running, committed_now = settle(context.instance, project, source)
    if committed_now:  # a run succeeded (whoever started it): the backoff starts over
        cursor.pop("failures", None)
        cursor.pop("retry_at", None)
    request = cursor.get("request")
    if request:
        runs = context.instance.get_runs(dg.RunsFilter(tags={REQUEST_TAG: request["id"]}), limit=1)
        run = runs[0] if runs else None
        if run is None and now() - request["at"] < LAUNCH_GRACE_S:
            return skip(f"waiting for requested run {request['id']!r} to start")
        if run is not None and (not run.is_finished or run.tags.get(WILL_RETRY_TAG) == "true"):
            return skip(f"run {run.run_id} of source {source!r} is {run.status.value}")
        del cursor["request"]
        if run is None or run.status != dg.DagsterRunStatus.SUCCESS:
            failures = cursor.get("failures", 0) + 1
            cursor.update(failures=failures, retry_at=now() + backoff_s(failures))
            what = f"run {run.run_id} {run.status.value}" if run else "the requested run never started"
            context.log.warning(f"source {source!r}: {what}; requesting again in "
                                f"{backoff_s(failures):.0f}s (failure {failures} in a row)")
        else:
            cursor.pop("failures", None)
            cursor.pop("retry_at", None)
            cursor["done"] = request["position"]  # no loop if that run's commit went missing
    if running is not None:
        return skip(f"run {running.run_id} is extracting source {source!r}")
    if cursor.get("retry_at") and now() < cursor["retry_at"]:
        return skip(f"source {source!r}: {cursor['failures']} failed run(s); next request in "
                    f"{cursor['retry_at'] - now():.0f}s")
    position = probe(project, source)
    committed = committed_position(project.artifact_dir, source, fingerprint(project.sources[source]))
    if position == committed or asdict(position) == cursor.get("done"):
        return skip(f"source {source!r}: nothing past the committed watermark "
                    f"({position.watermark}, {position.rows} rows)")
    attempt = cursor.get("failures", 0) + 1
    request_id = f"{source}:{now():.3f}"
    cursor["request"] = {"id": request_id, "at": now(), "attempt": attempt, "position": asdict(position)}
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=request_id, tags={
            SOURCE_TAG: source, REQUEST_TAG: request_id, ATTEMPT_TAG: str(attempt)})],
        cursor=json.dumps(cursor, sort_keys=True),
    )


def _source_sensor(project: Project, source: str) -> dg.SensorDefinition:
    @dg.sensor(
        name=sensor_name(source),
        target=[dg.AssetKey(k) for k in keys.assets_of(project, source)],
        minimum_interval_seconds=INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(f"Refreshes source `{source}` when PostgreSQL has rows past its committed "
                     f"watermark (`{project.sources[source].watermark}`) or fewer rows; a failed "
                     "run is requested again with exponential backoff."),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        return evaluate(context, project, source)

    return _sensor


def _commit_sensor(project: Project, sources: list[str]) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name=COMMIT_SENSOR,
        monitor_all_code_locations=True,  # `jammi materialize` runs have no code location
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=("Commits the watermark of each PostgreSQL source a successful run extracted, "
                     f"so the next run reads only newer rows ({', '.join(sources)})."),
    )
    def _commit(context: dg.RunStatusSensorContext):
        run_id = context.dagster_run.run_id
        done = [s for s in sources if commit_watermark(project.artifact_dir, s, run_id)]
        if done:
            context.log.info(f"run {run_id}: committed the watermark of {', '.join(done)}")

    return _commit


def build_watermark_sensors(project: Project) -> list[dg.SensorDefinition]:
    """A watermark sensor per PostgreSQL source with `watermark` (but `sensor: false`), and the
    commit sensor when there is any such source."""
    sources = watermark_sources(project)
    polled = [_source_sensor(project, s) for s in sources if project.sources[s].sensor is not False]
    return [*polled, _commit_sensor(project, sources)] if sources else []
