"""`quality_report`: every check's outcome over time as a table, a summary and a plot."""

import dagster as dg

from jammi import keys
from jammi.app.report import quality_report
from jammi.spec.project import Project


def quality_report_asset(project: Project) -> dg.AssetsDefinition:
    deps = [keys.validated(s) for s in project.sources] + [keys.fused(e) for e in project.entities]
    deps += [a for p in project.pipelines for a in keys.pipeline_assets(p)]

    @dg.asset(
        name=keys.QUALITY_REPORT,
        deps=deps,
        group_name="quality",
        kinds={"duckdb", "matplotlib"},
        description="A row per check per run (`SELECT * FROM jammi.quality_report`), the latest "
        "outcome of every check, and a plot of the main statistics over the last runs.",
    )
    def _report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        report = quality_report(project)
        context.log.info(f"quality_report: {len(report.results)} outcomes recorded; "
                         f"{report.failing} check(s) failing now")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(report.results),
                "failing_checks": report.failing,
                "summary": dg.MetadataValue.md(report.summary),
                **({"plot": dg.MetadataValue.path(str(report.plot))} if report.plot else {}),
            }
        )

    return _report
