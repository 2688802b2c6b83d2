"""The result of one data-quality check, independent of Dagster."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["warn", "error"]
MAX_EXAMPLES = 10


@dataclass(frozen=True)
class CheckOutcome:
    """One check on one frame or table.

    `statistic` is the measured figure the check compares with `threshold` (e.g. the worst
    null rate, the orphan count, the PSI); `examples` hold at most MAX_EXAMPLES JSON-able
    items a person can act on (keys, pairs, values); `details` hold further JSON-able figures.
    """

    name: str
    passed: bool
    severity: Severity
    statistic: float | None
    threshold: float | None
    description: str
    examples: list = field(default_factory=list)
    details: dict = field(default_factory=dict)


def blocking_failures(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    """The failed checks of severity error: they stop everything downstream."""
    return [o for o in outcomes if not o.passed and o.severity == "error"]


def outcome_json(o: CheckOutcome) -> dict:
    """The outcome as JSON-able values (numpy numbers made plain)."""
    def number(x):
        return None if x is None else float(x)
    return {**dataclasses.asdict(o), "passed": bool(o.passed), "statistic": number(o.statistic),
            "threshold": number(o.threshold)}
