"""Database URLs (DSNs) as pxtserve prints them: without their secrets.

A password can sit in the user-info (`postgresql://user:pw@host/db`) or in the query string
(`postgresql://user@host/db?password=pw`, which libpq and SQLAlchemy's drivers accept too, like
`sslpassword=`). Both are hidden, in the URL itself and wherever its secrets appear in other text
(a driver's error message, a start-up error).
"""

from __future__ import annotations

import re
import urllib.parse

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

HIDDEN = "***"
# query parameters whose values are secrets (password, sslpassword, passwd, pwd, token, secret, api_key, ...)
_SECRET_QUERY_KEY = re.compile(r"pass|pwd|secret|token|key", re.IGNORECASE)


def _parse(dsn: str) -> URL | None:
    try:
        return make_url(dsn)
    except (sa.exc.ArgumentError, ValueError):  # what make_url raises for malformed URLs
        return None


def _secret_query_keys(url: URL) -> list[str]:
    return [key for key in url.query if _SECRET_QUERY_KEY.search(key)]


def redact_url(dsn: str) -> str:
    """`dsn` with its password and secret query parameters shown as ***."""
    url = _parse(dsn)
    if url is None:
        return "<unparseable db_connect URL>"
    secret_keys = _secret_query_keys(url)
    if secret_keys:
        url = url.update_query_dict(dict.fromkeys(secret_keys, HIDDEN))
    # the query's *** is rendered URL-encoded
    return url.render_as_string(hide_password=True).replace(urllib.parse.quote(HIDDEN, safe=""), HIDDEN)


def redact_text(text: str, dsn: str) -> str:
    """`text` with `dsn` redacted in it, and its secrets (raw and URL-encoded) scrubbed wherever they appear."""
    url = _parse(dsn)
    if url is None:
        return text.replace(dsn, "<db_connect>")
    text = text.replace(dsn, redact_url(dsn))
    secrets: set[str] = set()
    if url.password:
        secrets.add(str(url.password))
        userinfo = url.render_as_string(hide_password=False).split("://", 1)[-1].split("@", 1)[0]
        secrets.add(userinfo.partition(":")[2])
    for key in _secret_query_keys(url):
        values = url.query[key]
        for value in (values,) if isinstance(values, str) else values:
            secrets |= {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    # longest first: a secret that contains another is scrubbed whole
    for secret in sorted(secrets - {""}, key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text
