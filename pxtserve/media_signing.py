"""Signed media URLs: the URL itself is the capability to fetch a protected route's media.

An `<img src>` cannot send an API key, so a router with any protected route (or auth of
its own) hands out media URLs that carry an expiry and an HMAC over the media path and
that expiry (`?expires=<unix time>&signature=<hex>`, keyed on SECRET_KEY with a salt of
its own), valid for PXTSERVE["MEDIA_URL_TTL"] seconds. Its media view then serves a file
only with a valid signature (or the router's own API key): missing, wrong or expired is
a 403. The media view cannot tell which route a file came from, and one file may be
reachable from a public and a protected route alike; so on such a router the public
routes' URLs are signed too (stripping a protected URL's signature must not make it
public). Routers whose routes are all public keep plain URLs.
"""

from __future__ import annotations

import time
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare, salted_hmac
from ninja.constants import NOT_SET

from pxtserve import conf
from pxtserve.auth import check_auth
from pxtserve.errors import ApiError, error_response

_SALT = "pxtserve.media_signing"
EXPIRES_PARAM = "expires"
SIGNATURE_PARAM = "signature"


def _signature(rel_path: str, expires: str) -> str:
    return salted_hmac(_SALT, f"{rel_path}\n{expires}", algorithm="sha256").hexdigest()


def signed_query(rel_path: str, now: float | None = None) -> str:
    """The query string that makes `rel_path` (a path under the media view, unquoted) fetchable until the TTL ends."""
    expires = str(int(now if now is not None else time.time()) + conf.settings().MEDIA_URL_TTL)
    return f"{EXPIRES_PARAM}={expires}&{SIGNATURE_PARAM}={_signature(rel_path, expires)}"


def signature_problem(rel_path: str, expires: str | None, signature: str | None) -> str | None:
    """None when the signature is valid now; else what is wrong with it (missing, wrong, expired)."""
    if not expires or not signature:
        return "missing"
    if not constant_time_compare(signature, _signature(rel_path, expires)):
        return "wrong"
    if not expires.isdigit() or int(expires) < time.time():
        return "expired"
    return None


async def media_access_denied(request: HttpRequest, rel_path: str, router_auth: Any) -> HttpResponse | None:
    """On a protected router: None when the request may fetch `rel_path` (a valid signature, or else the
    router's own auth passes), else the error response (403 for a missing, wrong or expired signature)."""
    problem = signature_problem(rel_path, request.GET.get(EXPIRES_PARAM), request.GET.get(SIGNATURE_PARAM))
    if problem is None:
        return None
    if problem == "missing" and router_auth not in (None, NOT_SET) and _sends_credentials(request):
        return await check_auth(router_auth, request)
    return error_response(
        ApiError(
            403,
            f"MEDIA_SIGNATURE_{problem.upper()}",
            f"this media URL's signature is {problem}: use a media URL a response gave within the last "
            f"{conf.settings().MEDIA_URL_TTL} s (MEDIA_URL_TTL)",
        )
    )


def _sends_credentials(request: HttpRequest) -> bool:
    return "Authorization" in request.headers or "X-API-Key" in request.headers
