"""`quality_report`: every check's outcome over time as a table, a summary and a plot."""

import dagster as dg

from jammi_assets.config import Project
from jammi_assets.quality.report import latest, plot_history, summary_markdown
from resources.artifacts import ArtifactStore


def quality_report_asset(project: Project) -> dg.AssetsDefinition:
    deps = [f"validated_{s}" for s in project.sources] + [f"fused_{e}" for e in project.entities]
    deps += [f"{p}_{suffix}" for p in project.pipelines for suffix in ("embeddings", "ann_index")]

    @dg.asset(
        name="quality_report",
        deps=deps,
        group_name="quality",
        kinds={"duckdb", "matplotlib"},
        description="A row per check per run (`SELECT * FROM jammi.quality_report`), the latest "
        "outcome of every check, and a plot of the main statistics over the last runs.",
    )
    def _report(context: dg.AssetExecutionContext, artifacts: ArtifactStore) -> dg.MaterializeResult:
        catalog = artifacts.catalog()
        with catalog.connect(read_only=True) as con:
            results = con.execute("SELECT * FROM quality_report ORDER BY checked_at").df()
        png = plot_history(results, artifacts.path / "quality" / "quality_report.png")
        failing = int((~latest(results)["passed"].astype(bool)).sum()) if len(results) else 0
        context.log.info(f"quality_report: {len(results)} outcomes recorded; {failing} check(s) failing now")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(results),
                "failing_checks": failing,
                "summary": dg.MetadataValue.md(summary_markdown(results)),
                **({"plot": dg.MetadataValue.path(str(png))} if png else {}),
            }
        )

    return _report
