"""The quality report: the latest outcome of every check as markdown, and the main
statistics over the last runs as a PNG."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pandas as pd

from jammi.storage import write_atomic

LAST_RUNS = 20
PLOT_KEY = "Jammi-Plot"  # the PNG text chunk holding the fingerprint of what was drawn
PLOT_VERSION = "2"  # bump when the drawing changes, so older images are drawn again
DPI = 100
PANEL_INCHES = (4.2, 2.8)  # one check's panel
TITLE_INCHES = 0.45


def latest(results: pd.DataFrame) -> pd.DataFrame:
    """The newest outcome per (asset, partition, check): a partition's failure stays in view
    after other partitions pass."""
    if results.empty:
        return results
    ordered = results.sort_values("checked_at")
    by = ["asset", "partition", "check_name"] if "partition" in ordered.columns else ["asset", "check_name"]
    return ordered.groupby(by, as_index=False, dropna=False).tail(1).sort_values(
        ["passed", "asset", "check_name"]
    )


def summary_markdown(results: pd.DataFrame) -> str:
    now = latest(results)
    if now.empty:
        return "_no check has run yet_"
    failing = now[~now["passed"]]
    lines = [
        f"**{len(now) - len(failing)} of {len(now)} checks pass**"
        + (f"; failing: {', '.join(failing['asset'] + '.' + failing['check_name'])}" if len(failing) else ""),
        "",
        "| asset | check | severity | result | statistic | threshold |",
        "|---|---|---|---|---|---|",
    ]
    for row in now.itertuples(index=False):
        mark = "pass" if row.passed else "**FAIL**"
        stat = "" if pd.isna(row.statistic) else f"{row.statistic:.4g}"
        thr = "" if pd.isna(row.threshold) else f"{row.threshold:.4g}"
        lines.append(f"| {row.asset} | {row.check_name} | {row.severity} | {mark} | {stat} | {thr} |")
    return "\n".join(lines)


def plot_history(results: pd.DataFrame, out: Path, last_runs: int = LAST_RUNS) -> Path | None:
    """One panel per check: its statistic per asset over the last runs, threshold dashed.

    Drawn on a bare Agg figure (no pyplot, no global state) with margins fixed in inches
    instead of tight_layout, which drew every panel twice. The PNG carries a fingerprint of
    what it shows; when `out` already shows the same (reruns that change nothing, once the
    window holds `last_runs` runs with the same outcomes) it is kept as it is."""
    if results.empty:
        return None
    runs = results.sort_values("checked_at")["run_id"].drop_duplicates().tail(last_runs).tolist()
    recent = results[results["run_id"].isin(runs)].copy()
    recent["run"] = recent["run_id"].map({r: i for i, r in enumerate(runs)})
    key = _fingerprint(recent, len(runs))
    if _drawn_key(out) == key:
        return out

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    checks = sorted(recent["check_name"].unique())
    cols = min(4, len(checks))
    rows = math.ceil(len(checks) / cols)
    width, height = PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows + TITLE_INCHES
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    # room for the y tick labels left of each panel, the x label below, the title above
    fig.subplots_adjust(left=0.65 / width, right=1 - 0.15 / width, bottom=0.5 / height,
                        top=1 - (TITLE_INCHES + 0.3) / height, wspace=0.3, hspace=0.45)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, check in zip(axes.flat, checks, strict=False):
        part = recent[recent["check_name"] == check]
        for asset, series in part.groupby("asset"):
            series = series.sort_values("run")
            ax.plot(series["run"], series["statistic"], marker="o", ms=3, label=asset)
            failed = series[~series["passed"]]
            ax.scatter(failed["run"], failed["statistic"], color="red", zorder=3, s=18)
        thresholds = part["threshold"].dropna()
        if len(thresholds):
            ax.axhline(thresholds.iloc[-1], color="grey", linestyle="--", linewidth=1)
        ax.set_title(check, fontsize=9)
        ax.set_xlim(-0.5, len(runs) - 0.5)  # the same runs on every panel
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("run", fontsize=7)
        if part["asset"].nunique() > 1:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(checks):]:
        ax.axis("off")
    fig.suptitle(f"Jammi quality checks over the last {len(runs)} run(s); red = failed", fontsize=10,
                 y=1 - 0.15 / height, va="top")
    out.parent.mkdir(parents=True, exist_ok=True)
    # a reader, or the next run's check, never sees half an image
    write_atomic(out, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, metadata={PLOT_KEY: key}))
    return out


def _fingerprint(recent: pd.DataFrame, runs: int) -> str:
    """Everything the plot is drawn from, in drawing order: equal fingerprints, equal images."""
    drawn = recent[["run", "check_name", "asset", "statistic", "passed", "threshold"]]
    text = f"{PLOT_VERSION}|{DPI}|{runs}|" + drawn.to_csv(index=False, float_format="%.17g")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _drawn_key(out: Path) -> str | None:
    """The fingerprint in the PNG at `out`; None when there is none or it cannot be read."""
    if not out.exists():
        return None
    from PIL import Image

    try:
        with Image.open(out) as img:
            img.verify()  # the whole file is there: no truncated image is kept
            return img.info.get(PLOT_KEY)
    except Exception:  # noqa: BLE001 - damaged or foreign: draw it again
        return None
