"""Bounds on what one HTTP connection may hold: an httptools protocol for uvicorn that times out slow heads
and bodies, refuses oversized heads (431) and connections beyond the limit, and WebSocket upgrades.

uvicorn (0.54, httptools) times out only idle keep-alive connections: a connection that sends its head a
byte at a time, or never sends a byte, or stalls in its body, is kept for ever, and a head is buffered
whole however large. A few hundred such connections cost nothing to open and hold a process's memory
and file descriptors. The timers here run on the event loop, one per connection at a time.

The limits are read from pxtserve.conf when a connection is made (every process of `serve --workers N`
has Django set up by then: uvicorn loads the application before it accepts).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

# uvicorn[standard] (a dependency) brings httptools; these hooks are its parser's callbacks
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pxtserve import conf

_REASONS = {
    408: b"Request Timeout",
    426: b"Upgrade Required",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def error_bytes(status: int, code: str, message: str) -> bytes:
    """A complete JSON error response (the API's `{"detail": {...}}` shape) that closes the connection:
    written by the protocol itself, since no request reached the application."""
    body = json.dumps({"detail": {"error_code": code, "message": message}}).encode()
    head = [
        b"HTTP/1.1 %d %s" % (status, _REASONS[status]),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"x-content-type-options: nosniff",
        b"connection: close",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on the head, a minimum rate for the body, a head size
    limit, a cap on open connections, and WebSocket upgrades refused (the service serves none)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = conf.settings()
        self._head_timeout: float = limits.REQUEST_HEAD_TIMEOUT
        self._body_timeout: float = limits.REQUEST_BODY_TIMEOUT
        self._body_min_bytes: int = limits.REQUEST_BODY_MIN_BYTES
        self._body_bytes = 0  # bytes of the body received in the current period of _body_timeout
        self._max_head: int = limits.MAX_REQUEST_HEAD
        self._max_connections: int = limits.MAX_CONNECTIONS
        self._timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes received since the current head began (or the last head ended)
        self._in_head = False
        self._in_body = False
        self._refused = False

    # connection

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        # uvicorn's own check (limit_concurrency) is made once a head is complete: a connection that never
        # completes one would still be accepted and held
        if len(self.connections) >= self._max_connections:
            self._refused = True
            transport.write(error_bytes(503, "TOO_MANY_CONNECTIONS", "the server has too many open connections"))
            transport.close()
            return
        super().connection_made(transport)
        # a connection that sends nothing: closed when its first head is due
        self._arm(self._head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._in_body:
            self._head_bytes += len(data)
        super().data_received(data)
        # httptools buffers a header until its line ends: while a head is incomplete, count what arrived
        if self._in_head and self._head_bytes > self._max_head and not self.transport.is_closing():
            self._refuse_large_head()

    # parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self._timer is None:  # a keep-alive connection's next request: its head is due from its first byte
            self._arm(self._head_timeout, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm()
        if self.transport.is_closing():  # a request pipelined behind one refused: not served
            return
        # a head that arrived whole in one read: measured as parsed
        if len(self.url) + sum(len(name) + len(value) for name, value in self.headers) > self._max_head:
            self._refuse_large_head()
            return
        if self._is_websocket_upgrade():
            self._refuse(426, "WEBSOCKET_NOT_SUPPORTED", "this server does not serve WebSocket connections")
            return
        super().on_headers_complete()
        self._in_body = True
        self._body_bytes = 0
        self._arm(self._body_timeout, self._body_period_ended)

    def on_body(self, body: bytes) -> None:
        if self.transport.is_closing():
            return
        super().on_body(body)
        self._body_bytes += len(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._disarm()
        if self.transport.is_closing():
            return
        super().on_message_complete()

    # timers

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._head_bytes == 0 and not self._in_head:
            self.transport.close()  # idle, nothing of a request sent: nothing to answer
            return
        self._refuse(408, "REQUEST_HEAD_TIMEOUT", f"the request head did not arrive within {self._head_timeout} s")

    def _body_period_ended(self) -> None:
        """Every period of _body_timeout must bring _body_min_bytes of the body: a byte now and then, which
        would reset an idle timer, does not keep a connection."""
        self._timer = None
        cycle = self.cycle
        # read paused: the application has not read what came; a client that sent `Expect: 100-continue`
        # waits for the application to ask for the body. Either way the client is not the slow one.
        waiting = self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue)
        if self._body_bytes >= self._body_min_bytes or waiting:
            self._body_bytes = 0
            self._arm(self._body_timeout, self._body_period_ended)
            return
        if cycle is not None and cycle.response_complete:
            self.transport.close()  # answered already (a 413, a 401): the rest of the body is not wanted
            return
        self._refuse(
            408,
            "REQUEST_BODY_TIMEOUT",
            f"the request body came slower than {self._body_min_bytes} bytes in {self._body_timeout} s",
        )

    def _refuse_large_head(self) -> None:
        message = f"the request line and headers exceed {self._max_head} bytes (PXTSERVE['MAX_REQUEST_HEAD'])"
        self._refuse(431, "REQUEST_HEAD_TOO_LARGE", message)

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer `status` and close, unless a response is already under way (then only close)."""
        self._disarm()
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.transport.write(error_bytes(status, code, message))
        elif not cycle.response_started:
            # the application is waiting for the body: it sees a disconnect, and its response goes nowhere
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.write(error_bytes(status, code, message))
        self.transport.close()

    # WebSocket: refused in on_headers_complete; uvicorn must never switch protocols (the application serves
    # no WebSocket scope: Django's handler raises on one), nor warn about an upgrade already answered

    def _should_upgrade_to_ws(self) -> bool:
        return False

    def _unsupported_upgrade_warning(self) -> None:
        if not self.transport.is_closing():
            super()._unsupported_upgrade_warning()

    def _is_websocket_upgrade(self) -> bool:
        upgrade = self._get_upgrade()
        return upgrade is not None and upgrade.lower() == b"websocket"
