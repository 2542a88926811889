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
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
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
    timeout: float | None,
    fn: Callable[..., T],
    *args: Any,
    pool: ThreadPoolExecutor | None = None,
    disconnected: Callable[[], Awaitable[Any]] | None = None,
) -> T:
    """Run `fn` on `pool` (default: the call pool), but give up waiting after `timeout` seconds.

    A call still queued for a thread is cancelled and never runs; one already
    running cannot be interrupted (Pixeltable offers no way to), so it finishes
    in its thread and its result is dropped. With `disconnected` (a coroutine function that returns once the
    client has gone away), the same happens when it returns first, and this raises CancelledError, as when the
    request's task is cancelled.
    """
    if tracing.enabled:
        fn = tracing.pool_call(fn)
    loop = asyncio.get_running_loop()
    # one loop future woken by the call's end or by the timer, whichever comes first: asyncio.wrap_future's chaining
    # of two futures and asyncio.timeout's context manager do the same with more steps per call
    waiter: asyncio.Future[object] = loop.create_future()
    # a copy of the caller's context, as run_in_pool: submit() runs `fn` in the pool thread's own
    future = (pool or get_pool()).submit(contextvars.copy_context().run, fn, *args)
    future.add_done_callback(functools.partial(_wake_from_pool, loop, waiter))
    timer = None if timeout is None else loop.call_later(timeout, _settle, waiter, _TIMED_OUT)
    listener = None
    if disconnected is not None:
        listener = loop.create_task(disconnected())
        listener.add_done_callback(functools.partial(_client_gone, waiter))
    try:
        woken_by = await waiter
    except asyncio.CancelledError:
        future.cancel()  # the request was cancelled (the client went away): a call not started never runs
        raise
    finally:
        if timer is not None:
            timer.cancel()
        if listener is not None:
            listener.cancel()
    if woken_by is _TIMED_OUT:
        # Future.cancel succeeds only for a call that has not started, which is what `started` says
        raise CallTimedOut(started=not future.cancel())
    if woken_by is _GONE:
        future.cancel()
        raise asyncio.CancelledError("the client went away")
    return future.result()


# what the timer wakes a waiter with, and the disconnect listener
_TIMED_OUT = object()
_GONE = object()


def _client_gone(waiter: asyncio.Future[object], listener: asyncio.Task[Any]) -> None:
    # the listener returns when the client has gone away; it is cancelled once the call is done (an error of its
    # own is retrieved here and says nothing about the client)
    if not listener.cancelled() and listener.exception() is None:
        _settle(waiter, _GONE)


def _wake_from_pool(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[object], future: Future[Any]) -> None:
    # on the pool thread (or the loop's, for a call that ended before the callback was added)
    if not loop.is_closed():
        loop.call_soon_threadsafe(_settle, waiter, None)


def _settle(waiter: asyncio.Future[object], woken_by: object) -> None:
    if not waiter.done():
        waiter.set_result(woken_by)


def shutdown_pool() -> None:
    """Close the Pixeltable runtimes of the pools' threads, then the pools."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool, size in pools:
        close_pool_runtimes(pool, size)
        pool.shutdown(wait=True)
