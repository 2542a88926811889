"""Request size limit, enforced at the ASGI layer.

Django's ASGI handler reads the whole request body (spooling it to disk) before any
middleware or view runs, so a limit checked there comes too late to save the server
the work. This wrapper answers 413 as soon as the declared Content-Length, or the
bytes actually received, pass the limit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pxtserve.errors import RequestTooLarge, error_body
from pxtserve.headers import security_headers

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _send_413(scope: Scope, send: Send, limit: int) -> None:
    status, detail = error_body(RequestTooLarge(limit))
    body = json.dumps(detail).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # the headers Django's SecurityMiddleware gives every other response; and the rest of the body is unwanted
    headers += [*security_headers(scope), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """Wrap an ASGI app so that no request body beyond `limit()` bytes reaches it."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _send_413(scope, send, limit)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except RequestTooLarge:
            if not started:
                await _send_413(scope, send, limit)
