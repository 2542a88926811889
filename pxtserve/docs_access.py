"""The API's documentation (/docs, /openapi.json): never framed by another site, and behind the service's auth
when PXTSERVE["DOCS_AUTH"] is on (off, the default: public, whatever the service's auth)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponseBase

from pxtserve import conf
from pxtserve.auth import check_auth_sync

View = Callable[..., HttpResponseBase]


def docs_decorator(auth: Any) -> Callable[[View], View]:
    """NinjaAPI's `docs_decorator`: wraps the views of /docs and /openapi.json; `auth` is the service's."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if conf.settings().DOCS_AUTH:
                refusal = check_auth_sync(auth, request)
                if refusal is not None:
                    return refusal
            response = view(request, *args, **kwargs)
            if response.get("Content-Type", "").startswith("text/html"):
                # Swagger UI's buttons send requests with the user's key: no other site may frame it (clickjacking)
                response["X-Frame-Options"] = "DENY"
            return response

        return guarded

    return decorate
