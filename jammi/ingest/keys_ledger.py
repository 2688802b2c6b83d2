"""A source's keys checked across the batches it is read in: no null or empty key, and no key
twice (compared as validation types them), in memory bounded by 8 bytes a row.

Each batch adds its null count and a 64-bit hash of each typed key. At the end, hashes seen
more than once are the only candidates for duplicates; the rows that hold them are read again
(from the parts already written) and checked exactly, so a hash collision refuses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from jammi.errors import KeyIntegrityError
from jammi.ingest.extract import _typed_keys, check_keys


def _blank(keys: pd.Series) -> pd.Series:
    """Null keys, and text keys that are empty or only whitespace."""
    missing = keys.isna()
    if keys.dtype != object and not isinstance(keys.dtype, pd.StringDtype):
        return missing
    text = keys.map(lambda v: isinstance(v, str)) if pd.api.types.infer_dtype(
        keys, skipna=True) != "string" else ~missing
    return missing | (text & (keys.where(text, "x").astype(str).str.strip() == ""))


class KeyLedger:
    def __init__(self, source: str, key: str, key_type: str):
        self.source, self.key, self.key_type = source, key, key_type
        self.rows = self.nulls = 0
        self.hashes: list[np.ndarray] = []

    def _hashes(self, keys: pd.Series) -> np.ndarray:
        typed = _typed_keys(keys, self.key_type)
        return pd.util.hash_array(typed.to_numpy(dtype=object), categorize=False)

    def add(self, batch: pd.DataFrame) -> None:
        if self.key not in batch.columns or not len(batch):
            return
        keys = batch[self.key]
        blank = _blank(keys)
        self.rows += len(batch)
        self.nulls += int(blank.sum())
        self.hashes.append(self._hashes(keys[~blank]))

    def check(self, reread: Callable[[], Iterable[pd.DataFrame]]) -> None:
        """Raise KeyIntegrityError (the run is refused) on a null or duplicate key; `reread`
        yields the batches again (their key column suffices) to name the duplicates."""
        if self.nulls:
            raise KeyIntegrityError(
                f"source {self.source!r}: key column {self.key!r} has {self.nulls} null or empty "
                f"value(s) out of {self.rows} rows; the run is refused and nothing was written")
        if not self.hashes:
            return
        values, counts = np.unique(np.concatenate(self.hashes), return_counts=True)
        suspects = values[counts > 1]
        if not len(suspects):
            return
        held = [batch[[self.key]][np.isin(self._hashes(batch[self.key]), suspects)]
                for batch in reread() if len(batch)]
        check_keys(self.source, self.key, pd.concat(held, ignore_index=True), self.key_type)
