"""The quality report step: every check's outcome over time, the latest summary, a plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from jammi.quality.report import latest, plot_history, summary_markdown
from jammi.spec.project import Project
from jammi.tables.catalog import Catalog

REPORT_PNG = Path("quality") / "quality_report.png"


@dataclass
class QualityReport:
    results: pd.DataFrame
    failing: int
    summary: str
    plot: Path | None


def quality_report(project: Project) -> QualityReport:
    catalog = Catalog(project.artifact_dir)
    with catalog.connect(read_only=True) as con:
        # a total order: the outcomes of one step share checked_at, and the plot (and its
        # fingerprint, which keeps an unchanged plot from being drawn again) follows this order
        results = con.execute("SELECT * FROM quality_report ORDER BY checked_at, asset, "
                              "partition NULLS FIRST, check_name").df()
    png = plot_history(results, project.artifact_dir / REPORT_PNG)
    failing = int((~latest(results)["passed"].astype(bool)).sum()) if len(results) else 0
    return QualityReport(results, failing, summary_markdown(results), png)
