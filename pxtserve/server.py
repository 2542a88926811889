"""What `serve` runs uvicorn with (`uvicorn_options`): an HTTP protocol with TCP_NODELAY set on every
connection and the connection limits of pxtserve.connections, an event loop whose process ends through
Python's exit on SIGTERM (`event_loop`), and uvicorn's own limits from pxtserve.conf.

asyncio sets TCP_NODELAY only on sockets whose `proto` is IPPROTO_TCP; the listening
socket uvicorn hands to its spawned `--workers` processes comes back with proto 0, so
their connections keep Nagle's algorithm and every keep-alive response waits ~40 ms
for the client's delayed ACK. Setting the option when a connection is made fixes it
for one process and many alike.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import socket
import sys
import threading
from typing import Any

from uvicorn.loops.auto import auto_loop_factory

from pxtserve import conf
from pxtserve.connections import GuardedHttpProtocol


def _no_delay(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # a socket that does not take it (already closed): nothing to speed up
            pass


class NoDelayHttpProtocol(GuardedHttpProtocol):
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


def _fit_open_file_limit(connections: int) -> None:
    """Raise this process's soft open-file limit (up to the hard one) to hold `connections` sockets besides
    what the process itself opens; uvicorn's worker processes inherit it. A common soft limit of 1024 would
    otherwise fail accepts (EMFILE) well below MAX_CONNECTIONS."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + _OWN_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard)
        )


# files a server process keeps open besides its connections (Pixeltable's pool, logs, media being sent)
_OWN_FILES = 256


def uvicorn_options() -> dict[str, Any]:
    """uvicorn.run's protocol, loop and connection limits (pxtserve.connections adds the ones it lacks).

    Also raises the open-file limit to fit MAX_CONNECTIONS (`_fit_open_file_limit`)."""
    limits = conf.settings()
    _fit_open_file_limit(limits.MAX_CONNECTIONS)
    return {
        "http": HTTP_PROTOCOL,
        # its processes end through Python's exit on SIGTERM, flushing what they hold
        "loop": EVENT_LOOP,
        # no WebSocket protocol: an upgrade request is answered 426 by the HTTP protocol
        "ws": "none",
        "timeout_keep_alive": limits.KEEP_ALIVE_TIMEOUT,
        # uvicorn answers 503 once as many connections (this one included) or requests in flight are open;
        # pxtserve.connections refuses connection MAX_CONNECTIONS + 1 itself, so uvicorn's is the request bound
        "limit_concurrency": limits.MAX_CONNECTIONS + 1,
        "backlog": limits.LISTEN_BACKLOG,
        # the h11 protocol's own head limit, should a site run uvicorn with it
        "h11_max_incomplete_event_size": limits.MAX_REQUEST_HEAD,
        # a graceful drain, but bounded: one stuck request must not hold the shutdown for ever
        "timeout_graceful_shutdown": limits.SHUTDOWN_GRACE_SECONDS,
    }
