"""The one bounded thread pool on which every Pixeltable call runs.

Django under ASGI would run a sync view in a new thread per request, and
Pixeltable keeps a runtime per thread; a fixed pool keeps runtimes warm and
connections bounded. It is as large as Pixeltable's connection pool proper
(db_pool_size), not pool + overflow: SQLAlchemy closes an overflow connection
as soon as it is returned, so threads beyond the pool size would open a new
PostgreSQL connection per call (measured: ~55 new connections/s at 16 clients
with 15 threads, none with 5, at the same throughput on 2 cores).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pxtserve import conf

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def pixeltable_pool_size() -> int:
    """The number of connections Pixeltable's engine keeps open (its `db_pool_size`)."""
    from pixeltable.config import Config

    configured = Config.get().get_int_value("db_pool_size")
    if configured is not None:
        return configured
    # Pixeltable's default when unset; no public accessor for it
    from pixeltable.env import _DEFAULT_DB_POOL_SIZE

    return int(_DEFAULT_DB_POOL_SIZE)


def get_pool() -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None:
            configured = conf.get("POOL_SIZE")
            _pool_size = int(configured) if configured is not None else pixeltable_pool_size()
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="pxtserve")
        return _pool


async def run_in_pool(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(get_pool(), functools.partial(fn, *args, **kwargs))


class PoolTimeout(Exception):
    """The call did not finish in time; `started` says whether it had begun (and may still finish)."""

    def __init__(self, started: bool) -> None:
        super().__init__("timed out")
        self.started = started


async def run_in_pool_with_timeout(timeout: float | None, fn: Callable[..., T], *args: Any) -> T:
    """run_in_pool, but give up waiting after `timeout` seconds.

    A call still queued for a thread is cancelled and never runs; one already
    running cannot be interrupted (Pixeltable offers no way to), so it finishes
    in its thread and its result is dropped.
    """
    if timeout is None:
        return await run_in_pool(fn, *args)
    future = get_pool().submit(fn, *args)
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
    except TimeoutError:
        raise PoolTimeout(started=not future.cancel()) from None


def shutdown_pool() -> None:
    """Close the Pixeltable runtimes of the pool's threads, then the pool."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is None:
        return
    from pixeltable.runtime import close_threadpool_runtimes

    close_threadpool_runtimes(pool, _pool_size)
    pool.shutdown(wait=True)
