"""uvicorn's HTTP protocol with TCP_NODELAY set on every connection.

asyncio sets TCP_NODELAY only on sockets whose `proto` is IPPROTO_TCP; the listening
socket uvicorn hands to its spawned `--workers` processes comes back with proto 0, so
their connections keep Nagle's algorithm and every keep-alive response waits ~40 ms
for the client's delayed ACK. Setting the option when a connection is made fixes it
for one process and many alike.
"""

from __future__ import annotations

import socket
from typing import Any

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
