"""URLs of the active service: include("pxtserve.urls") in a site's urlpatterns.

A configured service that does not build (PXTSERVE["CONFIG"] names a broken file, a
table it cannot open) must not make importing the URLconf raise: `manage.py check`
would end in a traceback instead of the check that names the problem
(pxtserve.checks), and the site's other pages (the admin) would fail with it. Its
paths answer 503 instead, saying the service is unavailable, and the reason is logged.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, URLResolver, re_path

from pxtserve.errors import ApiError, ServiceConfigError, error_response
from pxtserve.service import active_service

_logger = logging.getLogger(__name__)


def _unavailable(request: HttpRequest, **kwargs: Any) -> JsonResponse:
    # the reason stays in the log: it names files and tables, which are the operator's business
    return error_response(
        ApiError(503, "SERVICE_UNAVAILABLE", "the service's configuration does not load; the server log says why")
    )


def _urlpatterns() -> list[URLPattern | URLResolver]:
    try:
        service = active_service()
    except ServiceConfigError as exc:
        _logger.error("the configured service is not served: %s", exc)
        return [re_path(r"", _unavailable)]
    return service.urlpatterns() if service is not None else []


urlpatterns = _urlpatterns()
