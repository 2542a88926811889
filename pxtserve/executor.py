"""The one bounded thread pool on which every Pixeltable call runs.

Django under ASGI would run a sync view in a new thread per request, and
Pixeltable keeps a runtime per thread; a fixed pool sized to Pixeltable's
connection pool keeps runtimes warm and connections bounded.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from pxtserve import conf

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def get_pool() -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None:
            _pool_size = int(conf.get("POOL_SIZE"))
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="pxtserve")
        return _pool


async def run_in_pool(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(get_pool(), functools.partial(fn, *args, **kwargs))


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
