"""Credentials kept out of error messages and event logs: the password of a URL
(`scheme://user:***@host`, also without the scheme), the value of a libpq `password=` pair,
an API key in the `sk-...` form or after `Bearer`, and any literal value the project expanded
from a `${VAR}` reference."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"
# shorter expanded values ("1", "db") would garble every message that happens to contain them
MIN_SECRET_LENGTH = 4

# user:password@ after a scheme, or at the start of a word whose user part starts with a letter
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@\"']*|(?<![\w.-])[A-Za-z_][\w.-]*)"
                       r":([^\s@/\"']+)@")
_PASSWORD_PAIR = re.compile(r"(?i)\b(\w*password|passwd|pwd)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&'\"]+)")
# OpenAI-style secret keys (sk-..., sk-proj-...) and bearer tokens, wherever a service echoes them
_API_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every password it shows, and every one of `secrets`, replaced by ***."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(rf"\1:{MASK}@", text)
    text = _API_KEY.sub(f"sk-{MASK}", text)
    text = _BEARER.sub(rf"\1{MASK}", text)
    return _PASSWORD_PAIR.sub(rf"\1\2{MASK}", text)


def dsn_secrets(dsn: str | None) -> list[str]:
    """The password a connection string carries, as written and percent-decoded, so that a
    driver echoing only that part of a malformed DSN is redacted too."""
    if not dsn:
        return []
    found = [m.group(3).strip("'").replace("\\'", "'") for m in _PASSWORD_PAIR.finditer(dsn)]
    userinfo, at, _ = dsn.split("://", 1)[-1].split("/", 1)[0].rpartition("@")
    if at and ":" in userinfo:
        password = userinfo.split(":", 1)[1]
        found += [password, unquote(password)]
    return [s for s in found if s]
