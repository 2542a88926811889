"""Every error pxtserve raises on purpose, and the one place that turns an error into a response body.

- `ConfigurationError`: something declared or set that cannot be served, found before
  serving (a route, a service file, an export target, a setting).
- `ApiError`: answered to the client with an HTTP status and a stable `error_code`.
- `CallTimedOut`: a Pixeltable call outran REQUEST_TIMEOUT (the view words the 504).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import JsonResponse
from ninja.errors import HttpError


class PxtserveError(Exception):
    """The base of every error pxtserve raises on purpose."""


class ConfigurationError(PxtserveError):
    """A declaration or setting that cannot be served; the message names where."""


class RouteDefinitionError(ConfigurationError):
    """A route declaration that cannot be served, found at registration.

    `field` names the declaration field at fault (e.g. 'inputs'), so the TOML
    loader can point at it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ServiceConfigError(ConfigurationError):
    """A service declaration that cannot be served; the message names the file, service, route and field."""


class ExportConfigError(ConfigurationError):
    """An export_sql target that does not fit its route (the message never contains a password)."""


class SettingsError(ConfigurationError, ImproperlyConfigured):
    """A `settings.PXTSERVE` key that is unknown or has a value of the wrong type."""


class ApiError(PxtserveError):
    """An error answered to the client with an HTTP status and a JSON body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"error_code": self.code, "message": self.message}


class ExportWriteError(ApiError):
    """Writing a response row to an export_sql target failed (Pixeltable already committed)."""

    def __init__(self, message: str) -> None:
        super().__init__(500, "EXPORT_FAILED", message)


class RequestTooLarge(ApiError):
    """A request body beyond MAX_REQUEST_BODY."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "REQUEST_TOO_LARGE", f"request body is larger than the limit of {limit} bytes")


class UploadTooLarge(ApiError):
    """An uploaded file beyond MAX_UPLOAD_SIZE, refused as it arrives (pxtserve.upload_stream)."""

    def __init__(self, field: str, limit: int) -> None:
        super().__init__(
            413, "UPLOAD_TOO_LARGE", f"upload {field!r} is larger than the limit of {limit} bytes (MAX_UPLOAD_SIZE)"
        )


class TooManyPendingJobs(ApiError):
    """A background submission beyond MAX_PENDING_JOBS pending jobs (pxtserve.jobs.submit)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            429, "TOO_MANY_PENDING_JOBS", f"{limit} background jobs are waiting already (MAX_PENDING_JOBS); try later"
        )


class CallTimedOut(PxtserveError):
    """A call did not finish in time; `started` says whether it had begun (and may still finish)."""

    def __init__(self, started: bool) -> None:
        super().__init__("timed out")
        self.started = started


def error_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of an error answered to a client.

    Pixeltable errors carry their own status and a dict with the error code, message
    and whether a retry may succeed; ours carry the same fields. Ninja's HttpError
    (raised by auth) keeps Ninja's own shape, `{"detail": "<message>"}`.
    """
    # imported here: settings and middleware import this module, and need not start Pixeltable's import
    import pixeltable as pxt

    if isinstance(exc, ApiError):
        return exc.status, {"detail": exc.to_dict()}
    if isinstance(exc, pxt.Error):
        return exc.http_status, {"detail": exc.to_dict()}
    if isinstance(exc, HttpError):
        return exc.status_code, {"detail": exc.message}
    raise exc


def error_response(exc: Exception) -> JsonResponse:
    status, body = error_body(exc)
    return JsonResponse(body, status=status)
