"""Every schema version of a source as a Pandera model.

The current version's model is the one `validated_<source>` validates against (built from the
source's `columns`); each older version gets its own model from its `versions.<v>.columns`,
named `<Source>V1Frame` and so on. Lazy migration validates an older row against its own
version's model before migrating it, so a row that is not even valid in the version it was
written in is quarantined with that version named, not half-migrated.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pa

from jammi.silver.migrations import restrict_to_version
from jammi.silver.pandera_model import REASON_COLUMN, build_model, model_name, split_valid
from jammi.silver.versions import version_columns


def version_model(source: str, spec: Any, version: str) -> type[pa.DataFrameModel]:
    """The Pandera model of `version` of `source` (the source's own model for the current one)."""
    if spec.schema_ is None or version == spec.schema_.current:
        return build_model(source, spec)
    columns = version_columns(spec)
    if version not in columns:
        raise KeyError(f"source {source!r} declares no schema version {version!r} "
                       f"(declared: {', '.join(columns)})")
    model = build_model(source, spec.model_copy(update={"columns": columns[version]}))
    model.__name__ = model_name(source).removesuffix("Frame") + version.capitalize() + "Frame"
    return model


def version_models(source: str, spec: Any) -> dict[str, type[pa.DataFrameModel]]:
    """Every declared version's model, oldest first, the current version last."""
    return {v: version_model(source, spec, v) for v in version_columns(spec)}


def invalid_in_version(rows: pd.DataFrame, source: str, spec: Any, version: str) -> dict[Any, str]:
    """Rows (index -> reason) of `version` that its own Pandera model refuses."""
    if not len(rows):
        return {}
    own = restrict_to_version(rows, spec, version)
    _, failed = split_valid(own.reset_index(names="_raw_index"), version_model(source, spec, version))
    return {raw: f"schema {version}: {reason}"
            for raw, reason in zip(failed["_raw_index"], failed[REASON_COLUMN], strict=True)}
