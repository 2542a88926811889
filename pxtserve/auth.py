"""API-key authentication for served routes: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

No key: 401. A key that matches none of the configured ones: 403. Keys are compared
with hmac.compare_digest against every configured key, so the time taken does not
tell how much of a key was right. The keys come from Django settings or the
environment (pxtserve.conf), never from the service file.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja.errors import HttpError
from ninja.security import APIKeyHeader, HttpBearer

from pxtserve.errors import error_response

KeySource = Callable[[], Sequence[str]]


def _matches(key: str, keys: Sequence[str]) -> bool:
    given = key.encode()
    found = False
    for candidate in keys:
        # no early exit: every key is compared
        found |= hmac.compare_digest(given, candidate.encode())
    return found


def _check(key: str | None, keys: KeySource) -> Any:
    if not key:
        return None  # no credentials here; Ninja tries the other scheme, then answers 401
    if not _matches(key, keys()):
        raise HttpError(403, "invalid API key")
    return "api-key"


class BearerKey(HttpBearer):
    """The key as a bearer token (OpenAPI: http bearer)."""

    def __init__(self, keys: KeySource) -> None:
        super().__init__()
        self._keys = keys

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        return _check(token, self._keys)


class HeaderKey(APIKeyHeader):
    """The key in an X-API-Key header (OpenAPI: apiKey in header)."""

    param_name = "X-API-Key"

    def __init__(self, keys: KeySource) -> None:
        super().__init__()
        self._keys = keys

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        return _check(key, self._keys)


def api_key_auth(keys: KeySource) -> list[Any]:
    """Ninja auth for a route or router: either header form is accepted."""
    return [BearerKey(keys), HeaderKey(keys)]


async def check_auth(auth: Any, request: HttpRequest) -> HttpResponse | None:
    """Apply a route's own Ninja auth outside its operation (job polls); None when allowed.

    NOT_SET (the router's auth, already applied) and None (public) allow.
    """
    from ninja.constants import NOT_SET

    if auth is NOT_SET or auth is None:
        return None
    for callback in auth if isinstance(auth, (list, tuple)) else [auth]:
        try:
            result = callback(request)
            if inspect.isawaitable(result):
                result = await result
        except HttpError as exc:
            return error_response(exc)
        if result:
            return None
    return error_response(HttpError(401, "Unauthorized"))
