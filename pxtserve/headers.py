"""Django's SecurityMiddleware for API requests, without its thread hops (and CORS's, with a shortcut).

Its hooks are pure computation on the request and response (no I/O), but
MiddlewareMixin runs them through `sync_to_async(thread_sensitive=True)` in an async
chain: two thread hops per request on the lean API path (pxtserve.asgi). This
subclass runs them inline, so every SECURE_* setting (HSTS, SSL redirect, nosniff,
referrer and cross-origin-opener policies, SECURE_PROXY_SSL_HEADER) applies to API
paths exactly as Django applies it to the rest of the site.
"""

from __future__ import annotations

import io
from typing import Any

import corsheaders.middleware
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.security import SecurityMiddleware as DjangoSecurityMiddleware
from django.utils.cache import patch_vary_headers

from pxtserve.api_errors import host_refused


class SecurityMiddleware(DjangoSecurityMiddleware):
    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.process_request(request)
        if response is None:
            response = await self.get_response(request)
        return self.process_response(request, response)


class CorsMiddleware(corsheaders.middleware.CorsMiddleware):
    """django-cors-headers' middleware, answering a request without an Origin header (most API calls: no browser)
    without building `request.headers` for it and without parsing a Vary header the response does not have: what
    it adds then is `Vary: origin` alone, on the paths CORS applies to (CORS_URLS_REGEX, its signal)."""

    def add_response_headers(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if request.META.get("HTTP_ORIGIN"):
            return super().add_response_headers(request, response)
        enabled = getattr(request, "_cors_enabled", None)
        if enabled is None:
            enabled = self.is_enabled(request)
        if enabled:
            if response.has_header("Vary"):
                patch_vary_headers(response, ("origin",))
            else:
                response.headers["Vary"] = "origin"
        return response


def secure(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """`response` with the headers SecurityMiddleware gives every response: for answers made outside the chain.

    A fresh instance each time: Django's middleware reads the SECURE_* settings when it is built, and these
    answers (errors made before the chain runs) are rare.
    """
    return DjangoSecurityMiddleware(_no_view).process_response(request, response)


def answer_before_chain(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """An answer made before the API chain runs, as the chain would let it out: a Host the site does not serve is
    still its JSON 400, SECURE_SSL_REDIRECT still redirects, and the security headers are added."""
    security = DjangoSecurityMiddleware(_no_view)
    refused = host_refused(request)
    if refused is not None:
        response = refused
    else:
        response = security.process_request(request) or response
    return security.process_response(request, response)


def security_headers(scope: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """The security headers of a response to the request in `scope`, for an answer made at the ASGI layer."""
    from django.core.handlers.asgi import ASGIRequest

    try:
        request = ASGIRequest(scope, io.BytesIO())
    except UnicodeDecodeError:  # a request line Django cannot decode: no request to judge HTTPS by
        return []
    response = secure(request, HttpResponse())
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.items()
        if name.lower() != "content-type"
    ]


def _no_view(request: HttpRequest) -> HttpResponseBase:
    raise AssertionError("only process_response is used")
