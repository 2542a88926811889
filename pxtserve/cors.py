"""CORS for the served API: off unless settings list the allowed origins.

Only what browsers need for a JSON/multipart API: preflight answers, and the
Access-Control-Allow-Origin header on responses to allowed origins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from pxtserve import conf

_ALLOW_HEADERS = "authorization, content-type, x-api-key, range, if-none-match"
_ALLOW_METHODS = "GET, HEAD, POST, OPTIONS"


def _allowed(origin: str | None) -> bool:
    origins = conf.settings().CORS_ALLOWED_ORIGINS
    return bool(origin) and ("*" in origins or origin in origins)


def _decorate(response: HttpResponse, origin: str) -> HttpResponse:
    response["Access-Control-Allow-Origin"] = origin
    response["Access-Control-Expose-Headers"] = "content-range, content-length, etag, retry-after"
    vary = response.get("Vary")
    response["Vary"] = f"{vary}, Origin" if vary else "Origin"
    return response


class CorsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _preflight(self, request: HttpRequest) -> HttpResponse | None:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers and _allowed(origin):
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Methods"] = _ALLOW_METHODS
            response["Access-Control-Allow-Headers"] = _ALLOW_HEADERS
            response["Access-Control-Max-Age"] = "600"
            return _decorate(response, origin or "")
        return None

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        preflight = self._preflight(request)
        if preflight is not None:
            return preflight
        return self._finish(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        preflight = self._preflight(request)
        if preflight is not None:
            return preflight
        return self._finish(request, await self.get_response(request))

    def _finish(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        origin = request.headers.get("Origin")
        return _decorate(response, origin or "") if _allowed(origin) else response
