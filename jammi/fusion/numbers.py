"""Reading numbers written for people: currency signs and codes, thousands separators and the
decimal mark of a declared locale (`$1,999.00`; `1.999,00 €` with `locale: de_DE`).

Without a locale a number is written the English way: `,` groups thousands, `.` marks decimals.
Grouping must be well formed (`1,999,000`, not `19,99`), so a value in another convention is
refused rather than misread; `suggest_number_fix` then finds the mapping change that reads it.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import pandas as pd
from babel.numbers import get_decimal_symbol, get_group_symbol, list_currencies

NUMBER_REGEX = r"([-+]?[0-9][0-9.,'\s]*)"  # the number inside text such as "69.71 gbp" or "ca. $5"
COMMA_DECIMAL_LOCALE = "de_DE"  # what a suggestion names when values use a decimal comma
_SPACES = {" ", "\u00a0", "\u202f", "\u2009"}


@lru_cache(maxsize=64)
def _symbols(locale: str | None) -> tuple[str, str]:
    if locale is None:
        return ",", "."
    return get_group_symbol(locale), get_decimal_symbol(locale)


@lru_cache(maxsize=64)
def _pattern(locale: str | None) -> re.Pattern[str]:
    group, decimal = _symbols(locale)
    groups = "".join(re.escape(c) for c in sorted({group} | (_SPACES if group in _SPACES else set())))
    return re.compile(rf"^([-+]?)(\d{{1,3}}(?:[{groups}]\d{{3}})+|\d+)(?:{re.escape(decimal)}(\d+))?$")


@lru_cache(maxsize=1)
def _currency_codes() -> frozenset[str]:
    return frozenset(c.casefold() for c in list_currencies())


def _bare(text: str) -> str:
    """`text` without currency signs and codes, and without surrounding blanks."""
    text = "".join(c for c in text if unicodedata.category(c) != "Sc")
    words = [w for w in text.split() if w.casefold() not in _currency_codes()]
    return " ".join(words).strip()


def read_number(text: str, locale: str | None = None) -> float | None:
    """The number `text` writes, or None when it writes none (or writes it ambiguously)."""
    found = _pattern(locale).match(_bare(text))
    if found is None:
        return None
    sign, whole, fraction = found.groups()
    digits = re.sub(r"\D", "", whole) + ("." + fraction if fraction else "")
    value = float(digits)
    return -value if sign == "-" else value


def read_numbers(text: pd.Series, locale: str | None = None) -> pd.Series:
    """`read_number` of each value of a `string` Series, as Float64 (null where unread)."""
    distinct = text.dropna().unique()
    found = {v: read_number(v, locale) for v in distinct}
    return text.map(found).astype("Float64")


def suggest_number_fix(values: list[str], locale: str | None) -> str:
    """A change to the field's mapping that reads every one of `values`, tried before it is
    suggested; or what to do when no mapping change would."""
    def reads(vals: list[str], loc: str | None) -> bool:
        return all(read_number(v, loc) is not None for v in vals)

    def extracted(pattern: str) -> list[str]:
        found = [re.search(pattern, v) for v in values]
        return [m.group(1).strip() for m in found if m] if all(found) else []

    inner = extracted(NUMBER_REGEX)
    if locale is None and reads(values, COMMA_DECIMAL_LOCALE):
        return (f"they use a decimal comma: add `locale: {COMMA_DECIMAL_LOCALE}` (or the source's "
                "locale) to the field's mapping")
    if inner and reads(inner, locale):
        return f"add `regex: {NUMBER_REGEX!r}` to the field's mapping to keep only the number"
    if inner and locale is None and reads(inner, COMMA_DECIMAL_LOCALE):
        return (f"add `regex: {NUMBER_REGEX!r}` and `locale: {COMMA_DECIMAL_LOCALE}` to the field's "
                "mapping")
    return "they hold no number a mapping can read: map another column, or declare the field `str`"
