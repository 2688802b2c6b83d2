"""quality_report: a row per check per run, a markdown summary and a plot."""

from __future__ import annotations

import pytest

from jammi.app.facade import Jammi
from jammi.quality.frame_gate import BASE_CHECKS
from jammi.quality.report import summary_markdown
from jammi.tables.checks import ANN_RECALL, TABLE_CHECKS
from tests.conftest import PRODUCT_COLUMNS, materialize, write_project


@pytest.mark.slow
def test_quality_report_accumulates_runs(tmp_path, products_csv):
    project = write_project(
        tmp_path,
        {"products": {"kind": "csv", "path": "data/products.csv", "key": "id", "columns": PRODUCT_COLUMNS,
                      "quality": {"completeness": {"required": ["title"], "max_null_rate": 0.1}}}},
        {"products": {"source": "products", "text_columns": ["title", "body"]}},
    )
    first, second = materialize(project), materialize(project)
    assert first.success and second.success
    jammi = Jammi(project)
    rows = jammi.sql("SELECT run_id, asset, check_name, passed, statistic FROM jammi.quality_report")
    per_run = rows.groupby("run_id")["check_name"].apply(set)
    expected = {*BASE_CHECKS, *TABLE_CHECKS, ANN_RECALL}
    assert sorted(per_run.index) == sorted([first.run_id, second.run_id])
    assert all(checks == expected for checks in per_run)
    # row 4 has an empty title: 1 of 6 is over the 10% limit
    comp = rows[rows["check_name"] == "completeness"]
    assert comp["passed"].tolist() == [False, False]
    assert comp["statistic"].round(4).tolist() == [round(1 / 6, 4)] * 2
    # the second run compares with the first: identical frame, no drift
    drift = rows[(rows["check_name"] == "distribution_drift") & (rows["run_id"] == second.run_id)]
    assert drift["passed"].tolist() == [True] and drift["statistic"].tolist() == [0.0]

    report = next(e for e in second.get_asset_materialization_events()
                  if e.asset_key.to_user_string() == "quality_report").materialization
    assert report.metadata["failing_checks"].value == 1
    assert "completeness | warn | **FAIL**" in report.metadata["summary"].value
    png = project.artifact_dir / "quality" / "quality_report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert summary_markdown(rows.iloc[0:0]) == "_no check has run yet_"


def test_latest_keeps_a_failing_partition_in_view():
    import pandas as pd

    from jammi.quality.report import latest

    results = pd.DataFrame([
        {"asset": "validated_r", "partition": "2026-11-01", "check_name": "completeness", "passed": False,
         "checked_at": pd.Timestamp("2026-11-02 01:00")},
        {"asset": "validated_r", "partition": "2026-11-02", "check_name": "completeness", "passed": True,
         "checked_at": pd.Timestamp("2026-11-03 01:00")},
        {"asset": "validated_r", "partition": "2026-11-02", "check_name": "completeness", "passed": False,
         "checked_at": pd.Timestamp("2026-11-02 23:00")},
    ])
    now = latest(results)
    assert sorted(zip(now["partition"], now["passed"], strict=True)) == [("2026-11-01", False),
                                                                       ("2026-11-02", True)]
