"""`<source>_files_sensor`: materializes a file source when its files land or change.

One sensor per file source (csv, parquet, jsonl) unless the source says `sensor: false`. It
starts RUNNING when the source declares automation (`refresh`, `partitions` or `sensor: true`),
STOPPED otherwise. What it watches and requests:

- an unpartitioned source: one run of `<source>_job` when any of its files changed;
- `partitions: {by: "{date}", ...}`: a run of the partition a new or changed file belongs to;
- `partitions: {dynamic: files}`: a new file becomes a dynamic partition (key = the file name)
  and gets a run; a changed file gets another.

The waiting, the baseline, the failed-run retries and the cursor are sensors.file_state's."""

from __future__ import annotations

import json
import time

import dagster as dg

from jammi.ingest.landing import WHOLE_SOURCE, fingerprint, landed_files
from jammi.spec.project import Project, SourceSpec
from jammi_assets.jobs import PARTITION_TAG, SOURCE_TAG, source_job_name
from jammi_assets.partitions import dynamic_partitions_name
from sensors import file_state
from sensors.file_state import RunState

FILE_KINDS = ("csv", "parquet", "jsonl")
REQUEST_TAG = "jammi/files_request"
ATTEMPT_TAG = "jammi/attempt"
WILL_RETRY_TAG = "dagster/will_retry"  # Dagster's, on a failed run that run_retries will rerun
INTERVAL_S = 30


def sensor_name(source: str) -> str:
    return f"{source}_files_sensor"


def default_status(spec: SourceSpec) -> dg.DefaultSensorStatus | None:
    """RUNNING when the source declares automation, STOPPED otherwise; None: no sensor at all
    (`sensor: false`, or not a file source)."""
    if spec.kind not in FILE_KINDS or spec.sensor is False:
        return None
    declared = spec.sensor or spec.refresh is not None or spec.partitions is not None
    return dg.DefaultSensorStatus.RUNNING if declared else dg.DefaultSensorStatus.STOPPED


def run_state(instance: dg.DagsterInstance, run_key: str) -> RunState:
    """The state of the newest run carrying `run_key` (a retry of a failed run carries the
    same tags)."""
    runs = instance.get_runs(dg.RunsFilter(tags={REQUEST_TAG: run_key}), limit=1)
    if not runs:
        return RunState.MISSING
    run = runs[0]
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return RunState.SUCCEEDED
    if not run.is_finished or run.tags.get(WILL_RETRY_TAG) == "true":
        return RunState.RUNNING
    return RunState.FAILED


def evaluate(context: dg.SensorEvaluationContext, project: Project, source: str,
             now: float | None = None) -> dg.SensorResult:
    """One tick of `source`'s files sensor."""
    spec = project.sources[source]
    cursor = json.loads(context.cursor) if context.cursor else {}
    observed = {k: fingerprint(files) for k, files in landed_files(project, source).items()}
    groups, decision = file_state.tick(
        source, file_state.load_state(cursor, source), observed,
        lambda key: run_state(context.instance, key), time.time() if now is None else now)
    cursor[source] = file_state.dump_state(groups)
    dynamic = spec.partitions is not None and spec.partitions.dynamic == "files"
    added = []
    if dynamic:
        partitions = dynamic_partitions_name(source)
        added = [k for k in decision.new_groups
                 if not context.instance.has_dynamic_partition(partitions, k)]
    requests = []
    for key, request in decision.requests:
        tags = {SOURCE_TAG: source, REQUEST_TAG: request.run_key,
                ATTEMPT_TAG: str(request.attempt)}
        if key != WHOLE_SOURCE:
            tags[PARTITION_TAG] = key
        requests.append(dg.RunRequest(run_key=request.run_key, tags=tags,
                                      partition_key=None if key == WHOLE_SOURCE else key))
    if decision.baseline:
        context.log.info(f"source {source!r}: baseline of {len(observed)} file group(s); "
                         "nothing requested")
    for line in decision.waiting:
        context.log.info(f"source {source!r}: {line}")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(partitions, added)] if added else None,
        skip_reason=None if requests or added else _why_nothing(source, decision, observed),
        cursor=json.dumps(cursor, sort_keys=True),
    )


def _why_nothing(source: str, decision: file_state.Decision, observed: dict) -> str:
    if decision.baseline:
        return f"source {source!r}: first tick, recorded {len(observed)} file group(s) as the baseline"
    if decision.waiting:
        return f"source {source!r}: " + "; ".join(decision.waiting)
    return f"source {source!r}: no file changed"


def build_source_files_sensor(project: Project, source: str) -> dg.SensorDefinition | None:
    status = default_status(project.sources[source])
    if status is None:
        return None

    @dg.sensor(
        name=sensor_name(source),
        job_name=source_job_name(source),
        minimum_interval_seconds=INTERVAL_S,
        default_status=status,
        description=(f"Materializes source `{source}` when its files land or change (a file "
                     "still being written waits; a failed run is requested again with backoff)."),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        return evaluate(context, project, source)

    return _sensor


def build_source_files_sensors(project: Project) -> list[dg.SensorDefinition]:
    built = [build_source_files_sensor(project, s) for s in project.sources]
    return [s for s in built if s is not None]
