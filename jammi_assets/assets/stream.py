"""A stream source's assets: `raw_<source>`, `validated_<source>`, `quarantine_<source>` and its
pipeline's `<pipeline>_embeddings`, made by one step that takes one micro-batch from NATS
JetStream through the stream worker's own code path (jammi.app.stream). `jammi stream` keeps them
fresh with runless materializations; `stream_sensor` requests this step as a run when the
consumer lag passes the source's `lag_threshold`, for teams that want every batch as a run."""

import dagster as dg

from jammi import keys
from jammi.app.stream.worker import run_micro_batch
from jammi.spec.project import Project
from jammi.tables.generation import generation_of
from jammi_assets.stream_events import batch_metadata
from resources.embedding_model import EmbeddingModelResource


def micro_batch_step(source: str) -> str:
    return f"{source}_micro_batch"


def stream_assets(project: Project, source: str) -> dg.AssetsDefinition:
    spec = project.sources[source]
    pipeline = next(p for p, pipe in project.pipelines.items() if pipe.source == source)
    pipe = project.pipelines[pipeline]
    nats = spec.nats
    specs = [
        dg.AssetSpec(keys.raw(source), group_name="bronze", kinds={"nats"},
                     description=spec.description or f"Events of `{source}` on NATS subject `{nats.subject}` "
                     f"(stream {nats.stream}, consumer {nats.durable}).",
                     metadata={"source": source, "kind": "nats", "key": spec.key}),
        dg.AssetSpec(keys.validated(source), group_name="silver", kinds={"pandera", "pandas"},
                     deps=[keys.raw(source)], description=f"Events of `{source}` that pass the declared "
                     "schema, typed; a later event of a key replaces the earlier one."),
        dg.AssetSpec(keys.quarantine(source), group_name="silver", kinds={"pandas"}, deps=[keys.raw(source)],
                     description=f"Events of `{source}` that failed decoding or validation, with the "
                     "reason, stream sequence and payload; also sent to the dead-letter subject "
                     f"`{nats.dead_letter(source)}`."),
        dg.AssetSpec(keys.embeddings(pipeline), group_name="embeddings", kinds={"pytorch", "parquet"},
                     deps=[keys.validated(source)], code_version=generation_of(pipe, spec),
                     description=f"Embeddings of `{source}` ({' + '.join(pipe.text_columns)}) by "
                     f"`{pipe.model}`; each stream batch commits a version holding only its rows.",
                     metadata={"model": pipe.model, "text_columns": ", ".join(pipe.text_columns)}),
    ]

    @dg.multi_asset(name=micro_batch_step(source), specs=specs, can_subset=False, pool="embedding_model")
    def _micro_batch(context: dg.AssetExecutionContext, embedding_model: EmbeddingModelResource):
        encoder = embedding_model.for_pipeline(pipe, project.artifact_dir, project.secrets)
        result = run_micro_batch(project, pipeline, encoder, echo=context.log.info)
        if result is None:
            context.log.info(f"stream {source}: no event waiting on {nats.subject!r}")
            for s in specs:
                yield dg.MaterializeResult(asset_key=s.key, metadata={"events": 0})
            return
        metadata = batch_metadata(project, pipeline, result)
        for s in specs:
            name = s.key.to_user_string()
            extra = {"dagster/row_count": result.quarantined} if name == keys.quarantine(source) else {}
            yield dg.MaterializeResult(asset_key=s.key, metadata={**metadata.get(name, {}), **extra})

    return _micro_batch
