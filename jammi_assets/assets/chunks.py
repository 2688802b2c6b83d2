"""Silver: `chunks_<source>`, the documents of a chunked pipeline's source split into chunks
with their lineage (`doc_id`, offsets) and deterministic ids."""

import dagster as dg

from jammi import keys
from jammi.app.chunks import chunk_source
from jammi.spec.project import Project
from jammi_assets.metadata import frame_metadata


def chunks_asset(project: Project, source: str) -> dg.AssetsDefinition:
    pipeline = project.chunking_pipeline(source)
    pipe = project.pipelines[pipeline]
    spec = pipe.chunking

    @dg.asset(
        name=keys.chunks(source),
        deps=[project.frame_asset(source)],
        group_name="silver",
        kinds={"pandas", "parquet"},
        automation_condition=dg.AutomationCondition.eager()
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        description=(
            f"`{source}` ({' + '.join(pipe.text_columns)}) split into chunks of at most {spec.max_tokens} "
            f"tokens of `{pipe.model}` ({spec.strategy}, {spec.overlap} tokens of overlap): `doc_id`, "
            "`chunk_id` (document key + ordinal + content hash), `ordinal`, `start`, `end` (character "
            "offsets into the document), `text`."
        ),
        metadata={"unique_key": "chunk_id", "strategy": spec.strategy, "max_tokens": spec.max_tokens,
                  "overlap": spec.overlap},
    )
    def _chunks(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        run = chunk_source(project, source)
        context.log.info(f"{source}: {len(run.frame)} chunks of {run.documents} documents "
                         f"({run.rechunked} chunked, the rest unchanged) in {run.seconds:.1f}s")
        return dg.MaterializeResult(metadata={
            **frame_metadata(run.frame),
            "documents": run.documents,
            "documents_skipped": run.skipped,
            "documents_rechunked": run.rechunked,
            "seconds": round(run.seconds, 2),
        })

    return _chunks
