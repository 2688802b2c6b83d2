"""Credentials kept out of error messages and event logs: the password of a URL
(`scheme://user:***@host`, also without the scheme), the value of a libpq `password=` pair,
an API key in the `sk-...` form or after `Bearer`, any literal value the project expanded
from a `${VAR}` reference, object-store credentials (the values of the AWS, Azure and GCS
credential variables in the environment, `AccountKey=` and `sig=` pairs, AWS access key ids),
and the password of every connection string the process was
configured with (`remember_secrets`: the PostgreSQL catalog's DSN), whatever form it takes in a
message. `dsn_display` is how a DSN is named to people: host, port and database, nothing else."""

from __future__ import annotations

import os
import re
import threading
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
# object-store secrets (jammi.store hands them to pyarrow's chains), masked wherever they show (an
# access key id is a name, not a secret, and is left alone unless it has AWS's form)
CREDENTIAL_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                  "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
                  "AZURE_STORAGE_CONNECTION_STRING", "GOOGLE_OAUTH_ACCESS_TOKEN")
_KEY_PAIR = re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|sig|aws_secret_access_key|aws_session_token)"
                       r"(\s*=\s*)([^\s;&'\"]+)")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
# secrets of the process's own configuration (the catalog DSN's password), masked in every redact()
_REMEMBERED: set[str] = set()
_GUARD = threading.Lock()


def remember_secrets(secrets: Iterable[str]) -> None:
    """Mask these values in every later `redact` of this process (a driver may echo a password
    in a form no pattern catches, e.g. a DSN it failed to parse)."""
    with _GUARD:
        _REMEMBERED.update(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every password it shows, and every one of `secrets`, replaced by ***."""
    with _GUARD:
        known = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH} | _REMEMBERED
    known |= {v for name in CREDENTIAL_ENV if len(v := os.environ.get(name, "")) >= MIN_SECRET_LENGTH}
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(rf"\1:{MASK}@", text)
    text = _API_KEY.sub(f"sk-{MASK}", text)
    text = _BEARER.sub(rf"\1{MASK}", text)
    text = _KEY_PAIR.sub(rf"\1\2{MASK}", text)
    text = _AWS_KEY_ID.sub(MASK, text)
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


def dsn_display(dsn: str) -> str:
    """`host:port/dbname` of a libpq DSN (URL or key=value form), for messages and `jammi
    status`: never its user, password or other parameters. Unparsable: `a PostgreSQL DSN`."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - a malformed DSN is named without echoing any of it
        return "a PostgreSQL DSN"
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or 'postgres'}"
