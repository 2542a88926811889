"""Reads on the event loop's own thread when nothing else is in flight.

A query route's call normally hops to the call pool (pxtserve.executor) and back: a
submit, a pool thread woken, the loop woken through its self-pipe. When the request
is the only one the process is serving, that hop buys no concurrency, so a read
whose last call was short (INLINE_READ_SECONDS) runs right here instead. Whenever
another request is in flight the hop is kept, so concurrency under load is
unchanged.

What an inline call gives up: it cannot time out (REQUEST_TIMEOUT; a pool call that
has started cannot be interrupted either, but its waiter answers 504 on time), a
disconnect cannot cancel it, and the loop accepts nothing else until it returns: a
request that arrives meanwhile waits at most that long. Hence the per-route bound,
re-measured on every call wherever it runs: a route whose call took longer goes back
to the pool until a call there is short again.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pxtserve import conf, tracing
from pxtserve.executor import run_in_pool_with_timeout
from pxtserve.pxt_internals import can_run_on_loop_thread

T = TypeVar("T")


class InFlight:
    """API requests the lean ASGI handler (pxtserve.asgi) is serving in this process: only the loop's thread
    changes it, so it needs no lock."""

    count = 0


class CallTime:
    """How long a route's last call took (seconds, wall clock); None until its first call has ended."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: float | None = None


async def run_read(
    times: CallTime,
    timeout: float | None,
    fn: Callable[..., T],
    *args: Any,
    pool: ThreadPoolExecutor | None = None,
    disconnected: Callable[[], Awaitable[Any]] | None = None,
) -> T:
    """`fn(*args)` inline when it is the only request and its route's last call was short, else as
    run_in_pool_with_timeout runs it; timed either way."""
    call = _timed(times, fn)
    limit = conf.settings().INLINE_READ_SECONDS
    last = times.last
    if (
        InFlight.count == 1
        and last is not None
        and last <= limit
        and (timeout is None or last < timeout)
        and can_run_on_loop_thread()
    ):
        # requests that arrived with this one have their tasks queued: once they start they are in flight too
        await asyncio.sleep(0)
        if InFlight.count == 1:
            return _run_here(call, args)
    return await run_in_pool_with_timeout(timeout, call, *args, pool=pool, disconnected=disconnected)


def _run_here(call: Callable[..., T], args: tuple[Any, ...]) -> T:
    if tracing.enabled:
        call = tracing.pool_call(call)  # the span a pool thread would open, here under the request's
    loop = asyncio.events._get_running_loop()
    # Pixeltable runs a plan on its thread's own loop (run_until_complete) unless a loop is running in that thread,
    # when it starts a thread per call instead: for the duration of the call this thread runs no loop of its own
    asyncio.events._set_running_loop(None)
    try:
        # in a copy of the request's context, as the pool thread would run it: nothing it sets leaks back
        return contextvars.copy_context().run(call, *args)
    finally:
        asyncio.events._set_running_loop(loop)


def _timed(times: CallTime, fn: Callable[..., T]) -> Callable[..., T]:
    def timed(*args: Any) -> T:
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            times.last = time.perf_counter() - started

    if tracing.enabled:
        timed.__qualname__ = getattr(fn, "__qualname__", None) or repr(fn)  # what its span is named after
    return timed
