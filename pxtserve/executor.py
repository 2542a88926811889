"""The bounded thread pools on which Pixeltable calls run.

Django under ASGI would run a sync view in a new thread per request, and
Pixeltable keeps a runtime per thread; fixed pools keep runtimes warm and
connections bounded.

- The **call pool** runs queries and everything else that holds a Pixeltable
  connection while it runs. It is as large as Pixeltable's connection pool
  proper (db_pool_size), not pool + overflow: SQLAlchemy closes an overflow
  connection as soon as it is returned, so threads beyond the pool size would
  open a new PostgreSQL connection per call (figures: commit b301bdb).
- The **write pool** runs write requests (insert, update, delete). Their thread
  mostly waits for the table's writer thread (pxtserve/writes.py), which makes
  the Pixeltable call for the whole batch; so it is sized to let two full
  batches queue (2 x WRITE_BATCH_MAX), and a waiting write never keeps a query
  from a thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pxtserve import conf, metrics, tracing
from pxtserve.errors import CallTimedOut
from pxtserve.pxt_internals import close_pool_runtimes, default_db_pool_size

T = TypeVar("T")

_pools: dict[str, tuple[ThreadPoolExecutor, int]] = {}
_lock = threading.Lock()


def pixeltable_pool_size() -> int:
    """The number of connections Pixeltable's engine keeps open (its `db_pool_size`)."""
    return default_db_pool_size()


def _pool_size(kind: str) -> int:
    if kind == "write":
        return 2 * conf.settings().WRITE_BATCH_MAX
    configured = conf.settings().POOL_SIZE
    return configured if configured is not None else pixeltable_pool_size()


def _get(kind: str) -> ThreadPoolExecutor:
    with _lock:
        if kind not in _pools:
            size = _pool_size(kind)
            # the call pool counts its busy threads (pxtserve_pixeltable_pool_in_use)
            pool_class = metrics.CountedPool if kind == "call" else ThreadPoolExecutor
            _pools[kind] = (pool_class(max_workers=size, thread_name_prefix=f"pxtserve-{kind}"), size)
        return _pools[kind][0]


def get_pool() -> ThreadPoolExecutor:
    """The call pool: queries, uploads, health checks."""
    return _get("call")


def get_write_pool() -> ThreadPoolExecutor:
    """The write pool: requests that wait for a table's writer thread."""
    return _get("write")


async def run_in_pool(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    if tracing.enabled:
        fn = tracing.pool_call(fn)  # its span starts in the pool thread, under the request's
    # in a copy of the caller's context (run_in_executor does not copy it, asyncio.to_thread does): the request
    # id (pxtserve.request_id) stays on the log lines of the call
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(get_pool(), call)


async def run_in_pool_with_timeout(
    timeout: float | None, fn: Callable[..., T], *args: Any, pool: ThreadPoolExecutor | None = None
) -> T:
    """Run `fn` on `pool` (default: the call pool), but give up waiting after `timeout` seconds.

    A call still queued for a thread is cancelled and never runs; one already
    running cannot be interrupted (Pixeltable offers no way to), so it finishes
    in its thread and its result is dropped.
    """
    if tracing.enabled:
        fn = tracing.pool_call(fn)
    # a copy of the caller's context, as run_in_pool: submit() runs `fn` in the pool thread's own
    future = (pool or get_pool()).submit(contextvars.copy_context().run, fn, *args)
    if timeout is None:
        return await asyncio.wrap_future(future)
    # asyncio.timeout, not wait_for(shield(...)): no extra future and task per call. When it expires, the
    # cancelled wrapper cancels the call only if it has not started (Future.cancel), which is what `started` says.
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.wrap_future(future)
    except TimeoutError:
        raise CallTimedOut(started=not future.cancel()) from None


def shutdown_pool() -> None:
    """Close the Pixeltable runtimes of the pools' threads, then the pools."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool, size in pools:
        close_pool_runtimes(pool, size)
        pool.shutdown(wait=True)
