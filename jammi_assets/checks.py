"""Turning CheckOutcomes into Dagster asset-check specs and results."""

from __future__ import annotations

import json

import dagster as dg

from jammi.quality.outcome import CheckOutcome


def check_specs(asset: str, names: list[str], blocking: bool = True) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name=n, asset=asset, blocking=blocking, description=f"{n} of {asset}")
        for n in names
    ]


def check_result(outcome: CheckOutcome, asset: str | None = None) -> dg.AssetCheckResult:
    metadata = {
        "statistic": dg.MetadataValue.float(float(outcome.statistic or 0.0)),
        "threshold": dg.MetadataValue.float(float(outcome.threshold or 0.0)),
        "description": dg.MetadataValue.text(outcome.description),
    }
    if outcome.examples:
        metadata["examples"] = dg.MetadataValue.json(json.loads(json.dumps(outcome.examples, default=str)))
    if outcome.details:
        metadata["details"] = dg.MetadataValue.json(json.loads(json.dumps(outcome.details, default=str)))
    return dg.AssetCheckResult(
        check_name=outcome.name,
        asset_key=asset,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if outcome.severity == "error" else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )
