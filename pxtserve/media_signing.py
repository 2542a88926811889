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

import inspect
import time
from collections.abc import Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare, salted_hmac
from ninja.operation import AsyncOperation

from pxtserve import conf
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


def media_access_denied(request: HttpRequest, rel_path: str) -> HttpResponse | None:
    """None when the request's signature for `rel_path` is valid now, else the 403 saying what is wrong with it."""
    problem = signature_problem(rel_path, request.GET.get(EXPIRES_PARAM), request.GET.get(SIGNATURE_PARAM))
    if problem is None:
        return None
    return error_response(
        ApiError(
            403,
            f"MEDIA_SIGNATURE_{problem.upper()}",
            f"this media URL's signature is {problem}: use a media URL a response gave within the last "
            f"{conf.settings().MEDIA_URL_TTL} s (MEDIA_URL_TTL)",
        )
    )


# what SignedOrInherited grants a request it leaves to the view's signature check
SIGNATURE_TO_CHECK = "media-signature-to-check"


class SignedOrInherited:
    """The Ninja auth of a media view that inherits auth (its router's, a mount's, a NinjaAPI's): a request that
    carries credentials and no signature is judged by that auth, as before; any other is left to the view,
    which accepts only a valid signature (media_access_denied)."""

    is_async = True  # Ninja then awaits it on the event loop

    def __init__(self, inherited: Sequence[Any]) -> None:
        self.inherited = list(inherited)

    async def __call__(self, request: HttpRequest) -> Any:
        if request.GET.get(SIGNATURE_PARAM) or not _sends_credentials(request):
            return SIGNATURE_TO_CHECK
        for callback in self.inherited:
            result = callback(request)  # a wrong key raises Ninja's 403
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
        return None  # Ninja's 401


def _sends_credentials(request: HttpRequest) -> bool:
    return "Authorization" in request.headers or "X-API-Key" in request.headers


def media_check_needed(request: HttpRequest, router_protected: bool) -> bool:
    """Whether the media view must see a valid signature: Ninja's auth left it to the view, or no auth ran and the
    router is protected by its routes' auth alone."""
    granted = getattr(request, "auth", None)
    return granted == SIGNATURE_TO_CHECK or (granted is None and router_protected)


class MediaOperation(AsyncOperation):
    """The class of a router's media view operation (PixeltableRouter sets it). The auth it inherits (the
    router's, a mount's, the NinjaAPI's: Ninja hands it over in `_set_auth` as it binds the operation to an API)
    is wrapped so that a signed URL passes without credentials; the view then checks the signature."""

    def _set_auth(self, auth: Any) -> None:
        super()._set_auth(auth)
        if self.auth_callbacks and not isinstance(self.auth_callbacks[0], SignedOrInherited):
            self.auth_callbacks = [SignedOrInherited(self.auth_callbacks)]
