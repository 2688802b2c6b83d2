"""A uniform sample of a stream of frames, bounded in size: the rows with the smallest random
priorities (bottom-k sampling), kept in the order they were read. A source no larger than the
bound is sampled whole, in order, so its checks see every row."""

from __future__ import annotations

import numpy as np
import pandas as pd

SAMPLE_ROWS = 50000  # rows the checks of a validated frame see, however large the frame
_PRIORITY, _ORDER = "__sample_priority", "__sample_order"


class Reservoir:
    def __init__(self, size: int | None = None, seed: int = 0):
        self.size, self.rng = SAMPLE_ROWS if size is None else size, np.random.default_rng(seed)
        self.seen = 0
        self.kept: pd.DataFrame | None = None

    def add(self, frame: pd.DataFrame) -> None:
        if self.kept is None or not len(self.kept.columns):
            self.kept = frame.iloc[:0].assign(**{_PRIORITY: [], _ORDER: []})
        if not len(frame):
            return
        marked = frame.assign(**{_PRIORITY: self.rng.random(len(frame)),
                                 _ORDER: np.arange(self.seen, self.seen + len(frame))})
        self.seen += len(frame)
        both = pd.concat([self.kept, marked], ignore_index=True) if len(self.kept) else marked
        self.kept = both if len(both) <= self.size else both.nsmallest(self.size, _PRIORITY)

    @property
    def sampled(self) -> bool:
        """Whether some rows were left out."""
        return self.seen > self.size

    def frame(self) -> pd.DataFrame:
        """The sample, in the order its rows were read."""
        if self.kept is None:
            return pd.DataFrame()
        return self.kept.sort_values(_ORDER).drop(columns=[_PRIORITY, _ORDER]).reset_index(drop=True)
