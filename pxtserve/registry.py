"""The routes this process serves, and the keys by which a background job names its route.

Route keys: "<METHOD> <path>", prefixed with "<name>: " for a
`PixeltableRouter(name=...)` (a service's router is named after the service),
independent of where the router is mounted. Two unnamed routers in one process may
serve the same method and path; a job also records a digest of the route's
declaration (`route_digest`), which tells them apart, and routers declared
identically are interchangeable. Construction order is not used: a worker
constructs routers in a different order than the web process (service first, then
the URLconf).

This module imports nothing of pxtserve's but its errors, so anything may use it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

from pxtserve.errors import ApiError


class ServedOperation(Protocol):
    method: str

    @property
    def path(self) -> str: ...

    def describe(self) -> dict[str, Any]: ...


class LiveRouter(Protocol):
    router_id: int
    name: str | None

    @property
    def operations(self) -> Sequence[Any]: ...


_router_ids = itertools.count(1)
# every router this process has built (and still holds), for job workers to find routes in
_live_routers: weakref.WeakSet[Any] = weakref.WeakSet()


def register_router(router: LiveRouter) -> None:
    """Give a new router its id (unique in the process) and record it."""
    router.router_id = next(_router_ids)
    _live_routers.add(router)


def live_routers() -> list[Any]:
    """The routers this process has built and still holds, oldest first."""
    return sorted(_live_routers, key=lambda router: router.router_id)


def route_key(router_name: str | None, operation: ServedOperation) -> str:
    key = f"{operation.method} {operation.path}"
    return f"{router_name}: {key}" if router_name else key


def route_of_key(key: str) -> str:
    """A route as its clients know it, "POST /items": its route key without the router's name."""
    return key.rpartition(": ")[2]


def route_digest(operation: ServedOperation) -> str:
    """A digest of everything that declares the route: equal digests mean interchangeable operations."""
    text = json.dumps(operation.describe(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_operation(route: str, digest: str = "") -> Any:
    """The operation a job names, among the routers this process has built."""
    matches = [op for router in live_routers() for op in router.operations if route_key(router.name, op) == route]
    if len({route_digest(op) for op in matches}) > 1:
        matches = [op for op in matches if route_digest(op) == digest]
        if not matches:
            raise ApiError(
                500,
                "ROUTE_AMBIGUOUS",
                f"several routers serve {route}, none declared as when the job was submitted; "
                "give the routers names: PixeltableRouter(name=...)",
            )
    if not matches:
        raise ApiError(500, "ROUTE_NOT_SERVED", f"{route} is not served by this service's configuration any more")
    return matches[0]
