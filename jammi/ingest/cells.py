"""Text cells that cannot be kept as they were read: a NUL character, or a lone UTF-16
surrogate (`\\ud800` written in JSON, which no UTF-8 file, Parquet column or DuckDB string can
hold). Extraction never cuts or drops them: a NUL is kept exactly, a lone surrogate is kept
written as its JSON escape (`\\ud800`, six characters), and the row is marked with the reason in
the column `UNSTORABLE`, which validation turns into a quarantine reason naming the column."""

from __future__ import annotations

import re
from collections import defaultdict

import pandas as pd

UNSTORABLE = "_unstorable"  # a raw frame's column: why the row cannot pass as it was read
_BAD = re.compile("[\x00\ud800-\udfff]")


def _suspect(text: str) -> bool:
    """Whether `text` may hold a NUL or a lone surrogate: C-speed scans (a regex over a whole
    column's text costs ten times more)."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # only a surrogate cannot be encoded
        return True
    return False


def _escape(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


def _problem(column: str, text: str) -> str:
    found = _BAD.search(text)
    assert found is not None
    char, at = found.group(), found.start() + 1
    if char == "\x00":
        return f"{column}: holds a NUL character (U+0000) at character {at}, kept as it was read"
    return (f"{column}: holds a lone surrogate U+{ord(char):04X} at character {at}, which UTF-8 cannot "
            f"store; kept written as its escape \\u{ord(char):04x}")


def find_unstorable(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[object, list[str]]]:
    """(the frame with lone surrogates written as escapes, {row index: reasons}) for every text
    cell holding a NUL or a lone surrogate; the frame itself when no cell does."""
    reasons: dict[object, list[str]] = defaultdict(list)
    out = frame
    for column in frame.columns:
        if frame[column].dtype != object and not isinstance(frame[column].dtype, pd.StringDtype):
            continue
        values = frame[column]
        items = values.tolist()
        try:
            joined = "".join(items)  # only text, the usual case: joined in C
        except TypeError:
            joined = "".join(v for v in items if isinstance(v, str))
        if not _suspect(joined):
            continue
        changed = values.copy()
        for index, value in values.items():
            if isinstance(value, str) and _BAD.search(value) is not None:
                reasons[index].append(_problem(str(column), value))
                changed[index] = _BAD.sub(lambda m: m.group() if m.group() == "\x00" else _escape(m), value)
        if out is frame:
            out = frame.copy()
        out[column] = changed.astype(values.dtype) if values.dtype != object else changed
    return out, dict(reasons)


def mark_unstorable(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame made storable, its rows holding such cells marked in `UNSTORABLE` (the
    column is added only when a row needs it)."""
    out, reasons = find_unstorable(frame)
    if not reasons:
        return frame
    if UNSTORABLE in out.columns:  # marked once already (a frame made storable again)
        for index, rs in reasons.items():
            before = out.at[index, UNSTORABLE]
            before = before if isinstance(before, str) and before else ""
            reasons[index] = [*([before] if before else []), *(r for r in rs if r not in before)]
    else:
        out = out.copy() if out is frame else out
        out[UNSTORABLE] = None
    out[UNSTORABLE] = out[UNSTORABLE].astype(object)
    for index, rs in reasons.items():
        out.at[index, UNSTORABLE] = "; ".join(rs)
    return out


def take_marks(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[object, list[str]]]:
    """(the frame without `UNSTORABLE`, {row index: reasons}): the marks extraction left, and
    those of cells that reached validation without extraction (a stream's events)."""
    marked: dict[object, list[str]] = defaultdict(list)
    if UNSTORABLE in frame.columns:
        for index, reason in frame[UNSTORABLE].items():
            if isinstance(reason, str) and reason:
                marked[index].append(reason)
        frame = frame.drop(columns=[UNSTORABLE])
    frame, found = find_unstorable(frame)
    for index, rs in found.items():
        marked[index].extend(r for r in rs if not any(r in m for m in marked[index]))
    return frame, dict(marked)
