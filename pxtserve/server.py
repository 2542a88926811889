"""What `serve` runs uvicorn with: an HTTP protocol with TCP_NODELAY set on every connection, and an event
loop whose process ends through Python's exit on SIGTERM (`event_loop`).

asyncio sets TCP_NODELAY only on sockets whose `proto` is IPPROTO_TCP; the listening
socket uvicorn hands to its spawned `--workers` processes comes back with proto 0, so
their connections keep Nagle's algorithm and every keep-alive response waits ~40 ms
for the client's delayed ACK. Setting the option when a connection is made fixes it
for one process and many alike.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import threading
from typing import Any

from uvicorn.loops.auto import auto_loop_factory

try:  # httptools is the faster parser (uvicorn[standard]); h11 is always there
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - depends on the installed extras
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]


def _no_delay(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # a socket that does not take it (already closed): nothing to speed up
            pass


class NoDelayHttpProtocol(_Base):  # type: ignore[misc, valid-type]
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        _no_delay(transport)
        super().connection_made(transport)


# what `serve` passes to uvicorn (a string, so spawned worker processes can import it)
HTTP_PROTOCOL = "pxtserve.server:NoDelayHttpProtocol"


def event_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's loop (the `auto` one), made after SIGTERM is set to end the process through Python's exit.

    uvicorn stops gracefully on SIGTERM, then raises the signal again with the handler it found when it
    started serving. In a process that `serve --workers N` spawns that is the default handler, which kills
    the process on the spot: no `finally`, no atexit, so spans queued for export (pxtserve.tracing) were
    lost. uvicorn makes its loop before it takes the signal over, so the handler set here is the one it
    restores and raises. (serve's own process has one already: management/commands/serve.py.)
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return auto_loop_factory(use_subprocess=True)()


EVENT_LOOP = "pxtserve.server:event_loop"
