"""Django's SecurityMiddleware for API requests, without its thread hops.

Its hooks are pure computation on the request and response (no I/O), but
MiddlewareMixin runs them through `sync_to_async(thread_sensitive=True)` in an async
chain: two thread hops per request on the lean API path (pxtserve.asgi). This
subclass runs them inline, so every SECURE_* setting (HSTS, SSL redirect, nosniff,
referrer and cross-origin-opener policies, SECURE_PROXY_SSL_HEADER) applies to API
paths exactly as Django applies it to the rest of the site.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase
from django.middleware.security import SecurityMiddleware as DjangoSecurityMiddleware


class SecurityMiddleware(DjangoSecurityMiddleware):
    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.process_request(request)
        if response is None:
            response = await self.get_response(request)
        return self.process_response(request, response)
