"""The ASGI application pxtserve serves.

API requests take a lean path. Under ASGI, Django runs every sync-style middleware
hook, the request_started/finished signal receivers and `response.close()` through
`sync_to_async` on a thread created for the request: thread hops before an async
view even starts that cost more than the Pixeltable lookup it serves (figures: commit
7bdbbe1). API requests need none of that machinery (no sessions, CSRF, messages or
templates), so they go to a handler whose middleware chain is the async-capable
PXTSERVE["API_MIDDLEWARE"] and which closes responses inline. The admin, static
files and anything under PXTSERVE["FULL_DJANGO_PATHS"] keep Django's full handler.
"""

from __future__ import annotations

import asyncio
import functools
import io
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, ASGIRequest, get_script_prefix
from django.urls import get_resolver, set_script_prefix

from pxtserve import conf, intake, startup
from pxtserve.api_errors import client_error
from pxtserve.errors import ApiError, error_response
from pxtserve.headers import answer_before_chain
from pxtserve.inline_reads import InFlight
from pxtserve.limits import BodySizeLimit
from pxtserve.path_matches import resolve_path
from pxtserve.request_id import RequestIdAsgi
from pxtserve.upload_stream import ReceiveStream, parse_uploads


class ApiRequest(ASGIRequest):
    """An API request's body is bounded by MAX_REQUEST_BODY (pxtserve.limits, before it is read), not by
    DATA_UPLOAD_MAX_MEMORY_SIZE: a JSON body (a base64 image, a long document) between the two is accepted."""

    @property
    def body(self) -> bytes:
        if not hasattr(self, "_body") and not self._read_started and self.content_type != "multipart/form-data":
            self._body = self.read()
            self._stream = io.BytesIO(self._body)
        return super().body


class ApiHandler(ASGIHandler):
    """Django's ASGI handler with the API middleware chain and no per-request thread hops."""

    request_class = ApiRequest

    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler builds its chain from settings.MIDDLEWARE; this handler's chain is the API one.
        # Done once, at start-up, before any request is served.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = list(conf.settings().API_MIDDLEWARE)
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full

    def resolve_request(self, request: Any) -> Any:
        # the head's resolution (pxtserve.intake), unless a middleware has given the request a URLconf of its own
        if hasattr(request, "urlconf"):
            return super().resolve_request(request)
        match = getattr(request, intake.MATCH_ATTRIBUTE, None)
        if match is None:
            match = resolve_path(request)
        request.resolver_match = match
        return match

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # no ThreadSensitiveContext: nothing on this path runs thread-sensitive sync code
        # counted from the start: an upload being parsed or a file being sent is in flight too (pxtserve.inline_reads)
        InFlight.count += 1
        try:
            await self.handle(scope, receive, send)
        finally:
            InFlight.count -= 1

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        set_script_prefix(get_script_prefix(scope))
        # request_started/finished are not sent: their receivers (query log reset, closing old DB
        # connections) concern the event loop thread, which never opens a database connection here
        verdict, request = intake.PASS, None
        if intake.declares_body(scope):
            # decided from the headers alone (pxtserve.intake): credentials, Content-Type, multipart; the
            # request is built once, its body attached below
            request, _ = self.create_request(scope, intake.empty_body())
            if request is not None:
                verdict = await intake.inspect_head(request)
                if verdict.answer is not None:
                    await self._send_unread(verdict.answer, send)
                    return
        try:
            if verdict.refused or verdict.multipart:
                body_file: Any = intake.empty_body()
            else:
                body_file = await self.read_body(receive)
        except RequestAborted:
            return
        if request is not None:
            request._stream = body_file  # Django's own attribute for the body stream
        else:
            request, _ = self.create_request(scope, body_file)
        if request is None:
            # a request line Django cannot decode: say so in JSON, as for every other API error
            body_file.close()
            await self.send_response(
                error_response(ApiError(400, "BAD_REQUEST", "the request cannot be decoded")), send
            )
            return
        if verdict.refused:
            # the route's auth refuses it again, in the chain, with the usual answer; the body stays unread (so
            # no disconnect listener: what `receive` has next is the body)
            request.pxtserve_body_unread = True
            await self._respond(request, send)
            return
        if verdict.multipart:
            request._stream = ReceiveStream(receive)
            try:
                await sync_to_async(parse_uploads, thread_sensitive=False)(request)
            except RequestAborted:
                return
            except Exception as exc:
                # an upload or the body over its limit, a malformed body: answered now, the rest unread
                error = exc if isinstance(exc, ApiError) else client_error(exc)
                if error is None:
                    raise
                await self._send_unread(answer_before_chain(request, error_response(error)), send)
                return
        operation = verdict.operation if verdict.operation is not None else intake.ninja_operation(request)
        if intake.waits_only_in_its_call(operation):
            try:
                await self._respond_listening_in_call(request, receive, send)
            finally:
                body_file.close()
            return
        process = asyncio.create_task(self._respond(request, send))
        disconnect = asyncio.create_task(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait([process, disconnect], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (disconnect, process):
                if not task.done():
                    task.cancel()
                    try:
                        await task
                    except (asyncio.CancelledError, RequestAborted):
                        pass
            body_file.close()
        if disconnect.done() and not disconnect.cancelled():
            disconnect.exception()  # RequestAborted when the client went away: expected, retrieved here
        if process.done() and not process.cancelled():
            process.result()

    async def _respond_listening_in_call(self, request: Any, receive: Any, send: Any) -> None:
        """Respond in this task, with no listener of its own: the view's Pixeltable call listens for the client's
        going away while it waits (pxtserve.executor), the only wait of such a view, and raises CancelledError
        then, as this task's cancellation would; a call run inline (pxtserve.inline_reads) waits for nothing."""
        setattr(request, intake.DISCONNECTED_ATTRIBUTE, functools.partial(self._client_gone, receive))
        try:
            await self._respond(request, send)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this task itself is cancelled (the server is stopping): not the client's going away

    async def _client_gone(self, receive: Any) -> None:
        """Return once the client has gone away (Django's listener raises RequestAborted then)."""
        try:
            await self.listen_for_disconnect(receive)
        except RequestAborted:
            return

    async def read_body(self, receive: Any) -> Any:
        # a body that comes in one message (every request without a body, most JSON ones) is in memory already:
        # wrapped as it is instead of copied into Django's SpooledTemporaryFile; a longer one is spooled as before
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            return io.BytesIO(message.get("body", b""))
        return await super().read_body(_replayed(message, receive))

    async def send_response(self, response: Any, send: Any) -> None:
        # Django's encodes each header after a type check, adds cookies, and sends the body in 64 KiB chunks
        # through a generator; a plain API response (headers are str, no cookies) goes out in two messages
        if response.streaming or response.cookies:
            await super().send_response(response, send)
            return
        headers = [(name.encode("ascii"), value.encode("latin-1")) for name, value in response.items()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": response.content})

    async def _send_unread(self, response: Any, send: Any) -> None:
        """Answer without having read the body: the connection closes after it (the rest is never wanted)."""
        response["Connection"] = "close"
        await self.send_response(response, send)

    async def _respond(self, request: Any, send: Any) -> None:
        response = await self.run_get_response(request)
        if getattr(request, "pxtserve_body_unread", False):
            response["Connection"] = "close"
        try:
            await self.send_response(response, send)
        finally:
            # A streamed (file) response holds an open file: close it, inline, since that does no
            # database work. A plain response's body is bytes already; its close() would only send
            # request_finished, whose receivers tidy database connections this thread never opens.
            if response.streaming:
                response.close()


def _replayed(first: dict[str, Any], receive: Any) -> Any:
    """`receive`, answering `first` (a message already received) on its first call."""
    pending = [first]

    async def replay() -> dict[str, Any]:
        return pending.pop() if pending else await receive()

    return replay


class PathDispatcher:
    """Send API paths to the lean handler and the rest (admin, static files) to Django's own."""

    def __init__(self, api: Any, full: Any, full_prefixes: tuple[str, ...]) -> None:
        self.api, self.full, self.full_prefixes = api, full, full_prefixes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and not path.startswith(self.full_prefixes):
            await self.api(scope, receive, send)
        else:
            await self.full(scope, receive, send)


def build_application() -> Any:
    import django
    from django.core.asgi import get_asgi_application

    django.setup(set_prefix=False)
    full = get_asgi_application()
    prefixes = [*conf.settings().FULL_DJANGO_PATHS]
    static_url = getattr(settings, "STATIC_URL", None)
    if static_url:
        prefixes.append(static_url if static_url.startswith("/") else f"/{static_url}")
    app = PathDispatcher(ApiHandler(), full, tuple(prefixes))
    # the URLconf, and with it the service, is built now rather than by the first request: a `--workers N`
    # process then serves the routes as they were when it started, and its first client does not wait
    get_resolver().url_patterns  # noqa: B018 - evaluated for its side effect
    return RequestIdAsgi(BodySizeLimit(app, lambda: conf.settings().MAX_REQUEST_BODY))


_application: Any = None


def __getattr__(name: str) -> Any:
    """`pxtserve.asgi:application`, built on first use (what `serve --workers N` hands to uvicorn)."""
    global _application
    if name != "application":
        raise AttributeError(name)
    if _application is None:
        # a `--workers N` process builds Django, Pixeltable and the service here (pxtserve.startup says why)
        with startup.paused():
            _application = build_application()
    return _application
