"""A stream batch as Dagster sees it: the materializations of `raw_<source>`, `validated_<source>`
and `<pipeline>_embeddings` with the batch's counts. The worker (`jammi stream`) reports them
as runless materializations on the local instance, so the UI shows the stream's freshness; a
micro-batch run (jammi_assets.assets.stream) returns the same metadata from its step."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from jammi import keys
from jammi.app.stream.batch import BatchResult
from jammi.spec.project import Project
from jammi_assets.instance import use_local_instance

BATCH_TAG = "jammi/stream_batch"


def batch_metadata(project: Project, pipeline: str, result: BatchResult) -> dict[str, dict]:
    """Asset name -> the metadata of its materialization by this batch."""
    source = project.pipelines[pipeline].source
    counts = result.counts()
    lat = sorted(result.latencies)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None
    return {
        keys.raw(source): {"events": result.events, "stream": project.sources[source].nats.stream,
                           "subject": project.sources[source].nats.subject},
        keys.validated(source): {"dagster/row_count": result.accepted, "rows_quarantined": result.quarantined,
                                 "superseded_in_batch": result.superseded},
        keys.embeddings(pipeline): {
            **{k: v for k, v in counts.items() if v is not None},
            "table_name": result.table_name, "dead_lettered": result.dead_lettered,
            **({"latency_p95_s": round(p95, 3)} if p95 is not None else {}),
            "consumer_lag": result.lag,
        },
    }


def batch_reporter(project: Project, pipeline: str) -> Callable[[BatchResult], None]:
    """The `jammi stream` plug-in: each committed batch -> runless materializations."""
    instance = use_local_instance(project)

    def report(result: BatchResult) -> None:
        for asset, metadata in batch_metadata(project, pipeline, result).items():
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=asset, metadata=metadata,
                                        description=f"stream batch: {result.events} event(s)"))

    return report
