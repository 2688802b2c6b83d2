"""Silver: `validated_<source>` (Pandera-typed) and `quarantine_<source>` (rows that failed)."""

import dagster as dg
from dagster_pandera import pandera_schema_to_dagster_type

from jammi import keys
from jammi.app.sources import validate_source
from jammi.quality.frame_gate import check_names
from jammi.silver.pandera_model import REASON_COLUMN, build_model
from jammi.spec.project import Project
from jammi_assets.checks import check_result, check_specs
from jammi_assets.metadata import frame_metadata
from jammi_assets.partitions import source_partitions


def validate_asset(project: Project, name: str) -> dg.AssetsDefinition:
    spec = project.sources[name]
    validated, quarantine = keys.validated(name), keys.quarantine(name)
    parents = {fk.references.split(".")[0] for fk in spec.quality.foreign_keys} - {name}

    @dg.multi_asset(
        name=keys.validate_step(name),
        deps=[keys.raw(name), *(keys.validated(p) for p in sorted(parents))],
        check_specs=check_specs(validated, check_names(spec)),
        partitions_def=source_partitions(project, name),
        outs={
            validated: dg.AssetOut(
                group_name="silver",
                dagster_type=pandera_schema_to_dagster_type(build_model(name, spec)),
                io_manager_key="frame_io",
                kinds={"pandera", "pandas"},
                description=f"Rows of `{name}` that pass the declared schema, typed.",
                metadata={"unique_key": spec.key},
            ),
            quarantine: dg.AssetOut(
                group_name="silver",
                io_manager_key="frame_io",
                kinds={"pandas"},
                description=f"Rows of `{name}` that failed validation, as extracted, with "
                f"`{REASON_COLUMN}`.",
            ),
        },
    )
    def _validate(context: dg.AssetExecutionContext):
        partition = context.partition_key if context.has_partition_key else None
        run = validate_source(project, name, context.run_id, partition)
        silver = run.silver
        if len(silver.quarantine):
            context.log.warning(
                f"source {name!r}: {len(silver.quarantine)} of {run.rows_in} rows quarantined "
                f"(see {quarantine}); first: {silver.first_reason()}"
            )
        yield dg.Output(silver.valid, output_name=validated,
                        metadata={**frame_metadata(silver.valid), **silver.metadata()})
        yield dg.Output(silver.quarantine, output_name=quarantine,
                        metadata=frame_metadata(silver.quarantine))
        for outcome in run.outcomes:
            yield check_result(outcome, validated)

    return _validate
