"""Silver: `validated_<source>` (Pandera-typed) and `quarantine_<source>` (rows that failed)."""

import dagster as dg

from jammi import keys
from jammi.app.sources import validate_source
from jammi.quality.frame_gate import check_names
from jammi.silver.pandera_model import REASON_COLUMN
from jammi.spec.project import Project
from jammi_assets.checks import check_result, check_specs
from jammi_assets.metadata import stored_metadata
from jammi_assets.partitions import source_partitions


def validate_asset(project: Project, name: str) -> dg.AssetsDefinition:
    spec = project.sources[name]
    validated, quarantine = keys.validated(name), keys.quarantine(name)
    parents = {fk.references.split(".")[0] for fk in spec.quality.foreign_keys} - {name}
    deps = [keys.raw(name), *(keys.validated(p) for p in sorted(parents))]

    @dg.multi_asset(
        name=keys.validate_step(name),
        check_specs=check_specs(validated, check_names(spec)),
        partitions_def=source_partitions(project, name),
        specs=[
            dg.AssetSpec(validated, deps=deps, group_name="silver", kinds={"pandera", "parquet"},
                         description=f"Rows of `{name}` that pass the declared schema, typed.",
                         metadata={"unique_key": spec.key}),
            dg.AssetSpec(quarantine, deps=deps, group_name="silver", kinds={"parquet"},
                         description=f"Rows of `{name}` that failed validation, as extracted, with "
                         f"`{REASON_COLUMN}`."),
        ],
    )
    def _validate(context: dg.AssetExecutionContext):
        # validated batch by batch by the engine; the checks see a bounded uniform sample
        partition = context.partition_key if context.has_partition_key else None
        run = validate_source(project, name, context.run_id, partition)
        if run.quarantine.rows:
            context.log.warning(
                f"source {name!r}: {run.quarantine.rows} of {run.rows_in} rows quarantined "
                f"(see {quarantine}); first: {run.first_reason}"
            )
        yield dg.MaterializeResult(asset_key=validated, metadata={
            **stored_metadata(run.validated.path, run.validated.rows, run.validated.head),
            "rows_quarantined": run.quarantine.rows, **run.metadata,
            "unchanged_input": run.validated.unchanged, "checks_sampled": run.sampled})
        yield dg.MaterializeResult(asset_key=quarantine, metadata=stored_metadata(
            run.quarantine.path, run.quarantine.rows, run.quarantine.head))
        for outcome in run.outcomes:
            yield check_result(outcome, validated)

    return _validate
