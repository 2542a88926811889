"""Request ids: every response carries `X-Request-ID`, and every log line of the request carries the same id.

The id is the client's when it sent a sane one (a proxy or a caller that already
tagged the request, so both sides' logs line up), else a new one. It lives in a
contextvar for the request's duration: pxtserve.logs.RequestIdFilter puts it on every
log record, pxtserve.executor runs pool calls in a copy of the request's context, and
a background job stores it (Job.request_id) so the worker's lines carry it too.

RequestIdMiddleware goes first in the API chain (PXTSERVE["API_MIDDLEWARE"]) and in
settings.MIDDLEWARE: outermost, it sees the final response, the JSON error bodies
pxtserve.api_errors makes out of Django's own included, and it writes the access line
("pxtserve.access") that uvicorn's access log, which runs outside the request's
context, cannot carry the id in.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pxtserve.middleware import DualModeMiddleware

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase

HEADER = "X-Request-ID"
_HEADER_BYTES = HEADER.lower().encode()
# where RequestIdAsgi leaves the id in the ASGI scope, for the middleware
SCOPE_KEY = "pxtserve.request_id"
# what an id may be: short and free of anything that could forge a log line or a header (CR/LF, quotes, spaces)
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,200}")

_current: ContextVar[str | None] = ContextVar("pxtserve_request_id", default=None)
access_logger = logging.getLogger("pxtserve.access")


def current() -> str | None:
    """The id of the request (or job) being served in this context; None outside one."""
    return _current.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


def is_sane(value: str | None) -> bool:
    return value is not None and _SANE.fullmatch(value) is not None


def from_client(value: str | None) -> str:
    """The client's id when it is a sane one, else a new one."""
    return value if value is not None and is_sane(value) else new_request_id()


@contextmanager
def bound(request_id: str | None) -> Iterator[None]:
    """Make `request_id` the current one for the duration of the block (a job's run, a test)."""
    token = _current.set(request_id or None)
    try:
        yield
    finally:
        _current.reset(token)


class RequestIdMiddleware(DualModeMiddleware):
    """First in the lean API chain (async) and in settings.MIDDLEWARE (either)."""

    def call(self, request: HttpRequest) -> HttpResponseBase:
        request_id, token, started = self._start(request)
        try:
            return self._finish(request, self.get_response(request), request_id, started)
        finally:
            _current.reset(token)

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        request_id, token, started = self._start(request)
        try:
            return self._finish(request, await self.get_response(request), request_id, started)
        finally:
            _current.reset(token)

    @staticmethod
    def _start(request: HttpRequest) -> tuple[str, Token[str | None], float]:
        scope = getattr(request, "scope", None)
        # RequestIdAsgi chose it when it wraps the application (it answers what fails before Django with it, too)
        request_id = (scope or {}).get(SCOPE_KEY) or from_client(request.headers.get(HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]  # for views that answer with it
        return request_id, _current.set(request_id), time.perf_counter()

    @staticmethod
    def _finish(request: HttpRequest, response: HttpResponseBase, request_id: str, started: float) -> HttpResponseBase:
        response[HEADER] = request_id
        if access_logger.isEnabledFor(logging.INFO):
            log_access(request, response.status_code, (time.perf_counter() - started) * 1000)
        return response


def log_access(request: HttpRequest, status: int, duration_ms: float) -> None:
    """One line per request, in the shape of uvicorn's (`client - "METHOD path HTTP/x" status`) plus its duration.

    The path without its query string: GET routes carry their inputs there, which need not be in a log.
    The duration is until the response is ready; a streamed file's transfer comes after it.
    """
    scope = getattr(request, "scope", None)
    version = f"HTTP/{scope.get('http_version', '1.1')}" if scope else request.META.get("SERVER_PROTOCOL", "HTTP/1.1")
    client = request.META.get("REMOTE_ADDR") or "-"
    _access_line(client, request.method or "-", request.path, version, status, duration_ms)


def _access_line(client: str, method: str, path: str, version: str, status: int, duration_ms: float) -> None:
    # percent-encoded again, as the client sent it: the decoded path may hold a newline or quotes that would fake a line
    path = quote(path, safe="/:@!$&'()*+,;=~")
    access_logger.info(
        '%s - "%s %s %s" %d %.1f ms',
        client,
        method,
        path,
        version,
        status,
        duration_ms,
        extra={
            "client": client,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(duration_ms, 1),
        },
    )


class RequestIdAsgi:
    """The outermost ASGI wrapper of `pxtserve.asgi.build_application`: an answer made before Django's handler runs
    (pxtserve.limits' 413, a request Django cannot decode) carries an `X-Request-ID` and an access line too.

    It chooses the id and leaves it in the scope; RequestIdMiddleware, which sees every request Django handles,
    takes it from there, sets the header and logs the access line. A response that leaves without the header never
    passed the middleware: this wrapper adds the header and logs the line for it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((value.decode("latin-1") for name, value in scope["headers"] if name == _HEADER_BYTES), None)
        request_id = scope[SCOPE_KEY] = from_client(sent)
        started = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                if not any(name.lower() == _HEADER_BYTES for name, _ in headers):
                    message = {**message, "headers": [*headers, (_HEADER_BYTES, request_id.encode())]}
                    _log_scope_access(scope, message["status"], (time.perf_counter() - started) * 1000)
            await send(message)

        token = _current.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)


def _log_scope_access(scope: dict[str, Any], status: int, duration_ms: float) -> None:
    if access_logger.isEnabledFor(logging.INFO):
        client = scope.get("client")
        _access_line(
            client[0] if client else "-",
            scope.get("method", "-"),
            scope.get("path", ""),
            f"HTTP/{scope.get('http_version', '1.1')}",
            status,
            duration_ms,
        )
