"""The API's documentation (/docs, /openapi.json): never framed by another site, and behind the service's auth
when PXTSERVE["DOCS_AUTH"] is on (off, the default: public, whatever the service's auth)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponseBase

from pxtserve import conf
from pxtserve.auth import check_auth

View = Callable[..., HttpResponseBase]


def docs_decorator(auth: Any) -> Callable[[View], Callable[..., Awaitable[HttpResponseBase]]]:
    """NinjaAPI's `docs_decorator`: wraps the views of /docs and /openapi.json; `auth` is the service's."""

    def decorate(view: View) -> Callable[..., Awaitable[HttpResponseBase]]:
        # async, as the API chain is; Ninja's sync docs views run on a thread, as Django would run them
        async def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if conf.settings().DOCS_AUTH:
                refusal = await check_auth(auth, request)
                if refusal is not None:
                    return refusal
            response = await sync_to_async(view)(request, *args, **kwargs)
            if response.get("Content-Type", "").startswith("text/html"):
                # Swagger UI's buttons send requests with the user's key: no other site may frame it (clickjacking)
                response["X-Frame-Options"] = "DENY"
            return response

        return guarded

    return decorate
