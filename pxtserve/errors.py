"""The errors pxtserve raises, and how they become HTTP responses."""

from __future__ import annotations

from typing import Any

import pixeltable as pxt
from django.http import JsonResponse


class RouteDefinitionError(Exception):
    """A route declaration that cannot be served, found at registration.

    `field` names the declaration field at fault (e.g. 'inputs'), so the TOML
    loader can point at it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ApiError(Exception):
    """An error answered to the client with an HTTP status and a JSON body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"error_code": self.code, "message": self.message}


def error_response(exc: Exception) -> JsonResponse:
    """The response for an error raised while running a route operation.

    Pixeltable errors carry their own HTTP status and a dict with the error code,
    message and whether a retry may succeed; ours carry the same fields.
    """
    if isinstance(exc, ApiError):
        return JsonResponse({"detail": exc.to_dict()}, status=exc.status)
    if isinstance(exc, pxt.Error):
        return JsonResponse({"detail": exc.to_dict()}, status=exc.http_status)
    raise exc
