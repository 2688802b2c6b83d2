"""The quality report: the latest outcome of every check as markdown, and the main
statistics over the last runs as a PNG."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

LAST_RUNS = 20


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
    """One panel per check: its statistic per asset over the last runs, threshold dashed."""
    if results.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results.sort_values("checked_at")["run_id"].drop_duplicates().tail(last_runs).tolist()
    recent = results[results["run_id"].isin(runs)].copy()
    recent["run"] = recent["run_id"].map({r: i for i, r in enumerate(runs)})
    checks = sorted(recent["check_name"].unique())
    cols = min(4, len(checks))
    rows = math.ceil(len(checks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
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
        ax.tick_params(labelsize=7)
        ax.set_xlabel("run", fontsize=7)
        if part["asset"].nunique() > 1:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(checks):]:
        ax.axis("off")
    fig.suptitle(f"Jammi quality checks over the last {len(runs)} run(s); red = failed", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
