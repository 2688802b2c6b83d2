"""The silver recipe, the one way raw rows become validated rows: migrate older schema
versions to the current one, remediate, validate with the source's Pandera model, and
quarantine what fails with every reason. The `validated_<source>` asset, quarantine
re-admission, `infer --source` and the benchmarks all call `to_silver`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from jammi.ingest.cells import take_marks
from jammi.silver.migrate import CurrentFrame, to_current_version
from jammi.silver.pandera_model import REASON_COLUMN, build_model, split_valid
from jammi.silver.remediation import quarantine_as_extracted, remediate
from jammi.spec.project import SourceSpec


@dataclass
class Silver:
    """Rows of the current schema version that passed (typed), rows that failed as they were
    extracted (with `_quarantine_reason`), and what remediation and migration did."""

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    fixes: dict[str, int] = field(default_factory=dict)
    current: CurrentFrame | None = None

    def metadata(self) -> dict[str, int]:
        """Counts for the asset's materialization: quarantined rows, fixes, schema versions."""
        return {
            "rows_quarantined": len(self.quarantine),
            **{f"remediation/{fix}": n for fix, n in self.fixes.items()},
            **(self.current.metadata() if self.current is not None else {}),
        }

    def first_reason(self) -> str:
        return str(self.quarantine[REASON_COLUMN].iloc[0]) if len(self.quarantine) else ""


def to_silver(raw: pd.DataFrame, spec: SourceSpec, source: str) -> Silver:
    """Migrate, remediate, validate and quarantine the extracted rows of `source`; a row with a
    cell that could not be kept as it was read (jammi.ingest.cells) is quarantined."""
    raw, refused = take_marks(raw)
    current = to_current_version(raw, spec, source)
    fixed, fixes = remediate(current.frame, spec)
    valid, failed = split_valid(fixed, build_model(source, spec), refused)
    quarantine = current.with_unresolved(
        quarantine_as_extracted(raw.loc[current.frame.index], valid, failed))
    return Silver(valid, quarantine, fixes, current)
