"""Security headers for API responses, as an async middleware (Django's SecurityMiddleware
would cost two thread hops per request on the lean API path; see pxtserve.asgi)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse


class SecurityHeadersMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return _secure(self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        return _secure(await self.get_response(request))


def _secure(response: HttpResponse) -> HttpResponse:
    # media files are served with the type of their extension: never let a browser sniff another
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
