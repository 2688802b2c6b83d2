"""Silver: `validated_<source>` (Pandera-typed) and `quarantine_<source>` (rows that failed)."""

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from jammi_assets.config import Project
from jammi_assets.frames.remediation import quarantine_as_extracted, remediate
from jammi_assets.frames.schema import REASON_COLUMN, build_model, split_valid
from jammi_assets.metadata import frame_metadata
from jammi_assets.quality.dagster_checks import blocking_failures, check_result, check_specs
from jammi_assets.quality.frame_gate import check_names, frame_checks
from jammi_assets.schemas.lazy import to_current_version
from resources.artifacts import ArtifactStore, write_parquet_atomic


def validate_asset(project: Project, name: str) -> dg.AssetsDefinition:
    spec = project.sources[name]
    model = build_model(name, spec)
    frame_type = pandera_schema_to_dagster_type(model)
    validated = f"validated_{name}"
    parents = {fk.references.split(".")[0] for fk in spec.quality.foreign_keys} - {name}

    @dg.multi_asset(
        name=f"validate_{name}",
        ins={"raw": dg.AssetIn(f"raw_{name}")},
        deps=[f"validated_{p}" for p in sorted(parents)],
        check_specs=check_specs(validated, check_names(spec)),
        outs={
            validated: dg.AssetOut(
                group_name="silver",
                dagster_type=frame_type,
                io_manager_key="frame_io",
                kinds={"pandera", "pandas"},
                description=f"Rows of `{name}` that pass the declared schema, typed.",
            ),
            f"quarantine_{name}": dg.AssetOut(
                group_name="silver",
                io_manager_key="frame_io",
                kinds={"pandas"},
                description=f"Rows of `{name}` that failed validation, as extracted, with "
                f"`{REASON_COLUMN}`.",
            ),
        },
    )
    def _validate(context: dg.AssetExecutionContext, raw, artifacts: ArtifactStore):
        current = to_current_version(raw, spec, name)  # rows of older schema versions migrated
        fixed, fixes = remediate(current.frame, spec)
        valid, quarantine = split_valid(fixed, model)
        quarantine = current.with_unresolved(
            quarantine_as_extracted(raw.loc[current.frame.index], valid, quarantine))
        # drift compares with the last frame whose blocking checks passed, not the last written
        baseline = artifacts.frame_path(f"{validated}.baseline")
        previous = pd.read_parquet(baseline) if baseline.exists() else None
        parent_keys = {}
        for fk in spec.quality.foreign_keys:
            parent, _, col = fk.references.partition(".")
            parent_file = artifacts.frame_path(f"validated_{parent}")
            if parent == name:
                parent_keys[fk.references] = valid[col]
            elif parent_file.exists():
                parent_keys[fk.references] = pd.read_parquet(parent_file, columns=[col])[col]
        outcomes = frame_checks(project, name, valid, quarantine, previous, parent_keys)
        artifacts.catalog().record_checks(context.run_id, validated, None, outcomes)
        if not blocking_failures(outcomes):
            write_parquet_atomic(valid, baseline)
        if len(quarantine):
            context.log.warning(
                f"source {name!r}: {len(quarantine)} of {len(raw)} rows quarantined "
                f"(see quarantine_{name}); first: {quarantine[REASON_COLUMN].iloc[0]}"
            )
        yield dg.Output(
            valid,
            output_name=validated,
            metadata={**frame_metadata(valid), "rows_quarantined": len(quarantine),
                      **{f"remediation/{fix}": n for fix, n in fixes.items()}, **current.metadata()},
        )
        yield dg.Output(quarantine, output_name=f"quarantine_{name}", metadata=frame_metadata(quarantine))
        for outcome in outcomes:
            yield check_result(outcome, validated)

    return _validate
