"""Liveness and readiness for load balancers: /healthz answers while the process serves;
/readyz also checks that Pixeltable and Django's database answer.

Both endpoints are public, so /readyz says only which part is not ready and how (`failed`, or `timeout`
after READY_CHECK_TIMEOUT seconds): the error itself, which can carry file paths and connection details,
goes to the log. A check waits for its thread like any call; a Pixeltable pool busy with long calls makes
its check time out rather than hold the probe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from django.db import connection
from django.http import HttpRequest, JsonResponse

from pxtserve import conf
from pxtserve.errors import CallTimedOut
from pxtserve.executor import run_in_pool_with_timeout

_logger = logging.getLogger("pxtserve.health")

CheckState = Literal["ok", "failed", "timeout"]


async def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_pixeltable() -> None:
    import pixeltable as pxt

    pxt.list_tables()


def _check_database() -> None:
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


async def _pixeltable_state(timeout: float) -> None:
    # on the call pool: Pixeltable keeps its runtime per pool thread, and a saturated pool is not ready
    await run_in_pool_with_timeout(timeout, _check_pixeltable)


async def _database_state(timeout: float) -> None:
    # a thread of its own: Django's database must not wait behind Pixeltable calls
    await asyncio.wait_for(asyncio.to_thread(_check_database), timeout)


async def _state(name: str, check: Callable[[float], Awaitable[None]], timeout: float) -> CheckState:
    try:
        await check(timeout)
    except (CallTimedOut, TimeoutError):
        _logger.warning("readiness check %s: no answer within %s s", name, timeout)
        return "timeout"
    except Exception:  # any failure means "not ready": the log says why, the public answer does not
        _logger.exception("readiness check %s failed", name)
        return "failed"
    return "ok"


async def readyz(request: HttpRequest) -> JsonResponse:
    timeout = conf.settings().READY_CHECK_TIMEOUT
    parts = {"pixeltable": _pixeltable_state, "database": _database_state}
    states = await asyncio.gather(*(_state(name, check, timeout) for name, check in parts.items()))
    checks = dict(zip(parts, states, strict=True))
    ready = all(state == "ok" for state in states)
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
