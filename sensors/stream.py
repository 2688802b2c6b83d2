"""`stream_sensor`: for teams that want every stream batch as a Dagster run instead of (or
beside) the long-running `jammi stream` worker. Each tick reads the lag of every stream source's
durable consumer and, where it passes the source's `nats.lag_threshold`, requests a run of the
source's micro-batch step (raw_, validated_, quarantine_ and the pipeline's table: the worker's
own batch code path). The run key holds the consumer's last delivered sequence, so a tick that
finds the consumer where the last request left it requests nothing new.

Stopped by default; a stream source with `sensor: true` starts it."""

from __future__ import annotations

import dagster as dg

from jammi import keys
from jammi.ingest.nats_stream import StreamUnavailable, consumer_position
from jammi.spec.project import Project

STREAM_SENSOR = "stream_sensor"
SOURCE_TAG = "jammi/source"
INTERVAL_S = 30


def stream_sources(project: Project) -> list[str]:
    return [n for n, s in project.sources.items() if s.kind == "nats"]


def stream_asset_keys(project: Project, source: str) -> list[dg.AssetKey]:
    pipeline = next(p for p, pipe in project.pipelines.items() if pipe.source == source)
    names = (keys.raw(source), *keys.silver_outputs(source), keys.embeddings(pipeline))
    return [dg.AssetKey(n) for n in names]


def build_stream_sensors(project: Project) -> list[dg.SensorDefinition]:
    sources = stream_sources(project)
    if not sources:
        return []
    running = any(project.sources[s].sensor for s in sources)

    @dg.sensor(name=STREAM_SENSOR, minimum_interval_seconds=INTERVAL_S,
               target=dg.AssetSelection.assets(*[k for s in sources for k in stream_asset_keys(project, s)]),
               default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
               description="Requests a micro-batch run of a stream source when its consumer lag passes "
                           "`nats.lag_threshold`.")
    def _stream_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        requests, skipped = [], []
        for source in sources:
            spec = project.sources[source].nats
            try:
                position = consumer_position(source, spec, project.secrets)
            except StreamUnavailable as err:
                context.log.warning(str(err))
                skipped.append(f"{source}: NATS unavailable")
                continue
            if position.lag <= spec.lag_threshold:
                skipped.append(f"{source}: lag {position.lag} <= {spec.lag_threshold}")
                continue
            requests.append(dg.RunRequest(
                run_key=f"{source}:{position.delivered_seq}",
                asset_selection=stream_asset_keys(project, source),
                tags={SOURCE_TAG: source, "jammi/consumer_lag": str(position.lag)}))
        return dg.SensorResult(run_requests=requests,
                               skip_reason=None if requests else "; ".join(skipped) or "no stream source")

    return [_stream_sensor]
