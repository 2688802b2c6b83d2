"""The quality report's plot: drawn without pyplot, a panel per check over the last runs."""

from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from jammi.quality.report import DPI, LAST_RUNS, PANEL_INCHES, TITLE_INCHES, plot_history


def _results(runs: int, checks: list[str], assets: list[str]) -> pd.DataFrame:
    rows = []
    for r in range(runs):
        for check in checks:
            for i, asset in enumerate(assets):
                rows.append({"run_id": f"run-{r:03d}", "asset": asset, "check_name": check,
                             "passed": r % 7 != 3, "statistic": 0.01 * r + i, "threshold": 0.5,
                             "checked_at": pd.Timestamp("2026-12-01") + pd.Timedelta(minutes=r)})
    return pd.DataFrame(rows)


def test_plot_has_a_panel_per_check_and_the_last_runs(tmp_path):
    out = plot_history(_results(LAST_RUNS + 5, ["completeness", "row_count"], ["validated_a", "validated_b"]),
                       tmp_path / "quality" / "report.png")
    assert out == tmp_path / "quality" / "report.png"
    with Image.open(out) as img:  # two checks: one row of two panels, under the title
        assert img.format == "PNG"
        assert img.size == (round(2 * PANEL_INCHES[0] * DPI), round((PANEL_INCHES[1] + TITLE_INCHES) * DPI))
        assert len(set(img.convert("RGB").getdata())) > 50  # lines, markers, text: not blank


@pytest.mark.slow
def test_plot_of_many_checks_lays_them_out_four_a_row(tmp_path):
    checks = [f"check_{i:02d}" for i in range(15)]
    out = plot_history(_results(3, checks, ["validated_a"]), tmp_path / "report.png")
    with Image.open(out) as img:
        width, height = 4 * PANEL_INCHES[0], 4 * PANEL_INCHES[1] + TITLE_INCHES
        assert img.size == (round(width * DPI), round(height * DPI))


def test_no_outcome_no_plot(tmp_path):
    assert plot_history(_results(0, [], []), tmp_path / "report.png") is None
    assert not (tmp_path / "report.png").exists()


def test_an_unchanged_picture_is_not_drawn_again(tmp_path, monkeypatch):
    out = tmp_path / "report.png"
    results = _results(LAST_RUNS + 2, ["completeness", "row_count"], ["validated_a"])
    plot_history(results, out)
    first = out.read_bytes()

    import matplotlib.figure

    def no_drawing(*_args, **_kwargs):
        raise AssertionError("the picture was drawn again")

    with monkeypatch.context() as m:
        m.setattr(matplotlib.figure.Figure, "savefig", no_drawing)
        # the same outcomes under other run ids (reruns that changed nothing): the same picture
        plot_history(results.assign(run_id=results["run_id"] + "-rerun"), out)
    assert out.read_bytes() == first

    changed = results.copy()
    changed.loc[changed.index[-1], "statistic"] += 0.5
    plot_history(changed, out)
    assert out.read_bytes() != first


def test_a_damaged_picture_is_drawn_again(tmp_path):
    out = tmp_path / "report.png"
    results = _results(3, ["completeness"], ["validated_a"])
    plot_history(results, out)
    whole = out.read_bytes()
    out.write_bytes(whole[: len(whole) // 2])  # a write cut short keeps the fingerprint chunk
    plot_history(results, out)
    assert out.read_bytes() == whole
    assert [p.name for p in tmp_path.iterdir()] == ["report.png"]  # no temporary file left
