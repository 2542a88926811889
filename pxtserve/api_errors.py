"""Every error on an API path is JSON, in the documented shape `{"detail": {"error_code", "message"}}`.

Django answers some client errors itself, as HTML, before or around a view: a Host
that ALLOWED_HOSTS does not allow, a path no route serves (404), a method the path
does not take (405, from Ninja), a body Django cannot parse (multipart without a
boundary, bytes that are not UTF-8), a body over DATA_UPLOAD_MAX_MEMORY_SIZE. This
middleware, outermost in the API chain (pxtserve.asgi), turns each into JSON that
says what was wrong.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import markcoroutinefunction
from django.core.exceptions import BadRequest, DisallowedHost, RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI

from pxtserve.errors import ApiError, error_response
from pxtserve.middleware import DualModeMiddleware

# what a status means when Django gives it without saying why
_STATUS_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "REQUEST_TOO_LARGE"}


def client_error(exc: Exception) -> ApiError | None:
    """The ApiError for an exception Django raises while reading a request, or None for any other."""
    if isinstance(exc, DisallowedHost):
        return ApiError(400, "DISALLOWED_HOST", f"{exc}; the server's ALLOWED_HOSTS do not include it")
    if isinstance(exc, RequestDataTooBig):
        return ApiError(413, "REQUEST_TOO_LARGE", f"request body too large: {exc}")
    if isinstance(exc, MultiPartParserError):
        return ApiError(400, "BAD_MULTIPART", f"the multipart body cannot be parsed: {exc}")
    if isinstance(exc, UnicodeDecodeError):
        return ApiError(400, "BAD_ENCODING", f"the request is not valid UTF-8: {exc.reason} at byte {exc.start}")
    if isinstance(exc, (BadRequest, SuspiciousOperation)):
        return ApiError(400, "BAD_REQUEST", str(exc) or "bad request")
    return None


def _as_json(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """A non-JSON error response of Django's (404 from the URL resolver, Ninja's bare 405, ...) as JSON."""
    code = _STATUS_CODES.get(response.status_code)
    if code is None or response.get("Content-Type", "").startswith("application/json"):
        return response
    if response.status_code == 404:
        message = f"no route serves {request.path}"
    elif response.status_code == 405:
        message = f"{request.method} is not allowed on {request.path}; allowed: {response.get('Allow', 'none')}"
    else:
        message = getattr(response, "content", b"").decode(errors="replace").strip() or code.lower()
    converted = error_response(ApiError(response.status_code, code, message))
    for header in ("Allow", "Retry-After"):
        if header in response:
            converted[header] = response[header]
    return converted


def host_refused(request: HttpRequest) -> JsonResponse | None:
    """The JSON 400 for a Host the site does not serve (DNS rebinding), or None when it is allowed."""
    try:
        request.get_host()
    except DisallowedHost as exc:
        return error_response(client_error(exc) or ApiError(400, "DISALLOWED_HOST", str(exc)))
    return None


class AllowedHostsMiddleware(DualModeMiddleware):
    """The same JSON 400 for the paths of Django's full handler (admin, static), first in settings.MIDDLEWARE."""

    def call(self, request: HttpRequest) -> HttpResponseBase:
        return host_refused(request) or self.get_response(request)

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        return host_refused(request) or await self.get_response(request)


class ApiErrorsMiddleware:
    """Async only: the API chain is async (pxtserve.asgi)."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        # DNS rebinding: a Host the site does not serve is refused before anything else runs
        refused = host_refused(request)
        if refused is not None:
            return refused
        return _as_json(request, await self.get_response(request))

    def process_exception(self, request: HttpRequest, exc: Exception) -> JsonResponse | None:
        """Django calls this (sync: its exception stack is) for exceptions that escape a view; Ninja re-raises
        what it has no handler for when DEBUG is off (see install_error_handlers for DEBUG on)."""
        error = client_error(exc)
        return None if error is None else error_response(error)


def install_error_handlers(api: NinjaAPI) -> None:
    """Answer the request-reading errors as JSON inside a NinjaAPI too: with DEBUG on, Ninja answers any
    exception without a handler with a plain-text traceback before the middleware sees it."""

    def handle(request: HttpRequest, exc: Exception) -> HttpResponseBase:
        error = client_error(exc)
        if error is None:
            raise exc
        return error_response(error)

    for exc_class in (RequestDataTooBig, MultiPartParserError, UnicodeDecodeError, BadRequest, SuspiciousOperation):
        api.add_exception_handler(exc_class, handle)
