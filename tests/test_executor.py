"""Pixeltable calls run on a bounded pool the size of Pixeltable's connection pool: no connection per request."""

from __future__ import annotations

import asyncio

import httpx
from django.test import override_settings

from .test_limits import asgi_app, urlconf_for
from .test_routes_query import SERVICE  # an insert route at /items and a GET one_row lookup at /lookup


def concurrent_lookups(key: int, n: int) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=asgi_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await asyncio.gather(*(client.get("/lookup", params={"id": key}) for _ in range(n)))

    return asyncio.run(go())


def test_pool_matches_pixeltable_connection_pool_and_opens_no_connection_per_request(pxt_tables, new_id):
    import sqlalchemy as sql
    from pixeltable.env import Env

    from pxtserve.executor import get_pool, pixeltable_pool_size

    assert get_pool()._max_workers == pixeltable_pool_size() == 5  # the default of both
    urls = urlconf_for(SERVICE)
    key = new_id()
    with override_settings(ROOT_URLCONF=urls):
        assert concurrent_lookups(key, 1)[0].status_code == 404  # not inserted yet
        pxt_tables.items.insert([{"id": key, "name": "pooled"}])
        # warm-up: every pool thread opens (at most) its pooled connection
        assert {r.status_code for r in concurrent_lookups(key, 32)} == {200}

        opened: list[object] = []
        engine = Env.get().engine

        def on_connect(dbapi_connection: object, record: object) -> None:
            opened.append(dbapi_connection)

        sql.event.listen(engine, "connect", on_connect)
        try:
            responses = concurrent_lookups(key, 64)
        finally:
            sql.event.remove(engine, "connect", on_connect)
    assert [r.json() for r in responses] == [responses[0].json()] * 64
    assert responses[0].json()["name"] == "pooled"
    # 64 requests at once queue for 5 threads, each reusing its kept connection: nothing new was opened
    assert opened == []


def test_waiting_writes_keep_no_query_from_a_thread_and_batch_beyond_the_pool_size(pxt_tables, new_id):
    """Sixteen inserts wait for a held writer (more than the call pool's 5 threads): a lookup still
    answers meanwhile, and once the writer goes, all sixteen go in as one insert call."""
    from pxtserve.tables import TableInfo
    from pxtserve.writes import writer_for

    items = pxt_tables.items
    writer = writer_for(TableInfo.of(items))
    existing = new_id()
    items.insert([{"id": existing, "name": "there"}])
    keys = [new_id() for _ in range(16)]
    urls = urlconf_for(SERVICE)

    async def go() -> tuple[httpx.Response, list[httpx.Response]]:
        transport = httpx.ASGITransport(app=asgi_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            writer._gate.clear()
            try:
                inserts = [asyncio.create_task(client.post("/items", json={"id": k, "name": f"w{k}"})) for k in keys]
                deadline = asyncio.get_running_loop().time() + 10
                while len(writer._queue) < len(keys):
                    assert asyncio.get_running_loop().time() < deadline, f"{len(writer._queue)} writes queued"
                    await asyncio.sleep(0.01)
                lookup = await asyncio.wait_for(client.get("/lookup", params={"id": existing}), 10)
            finally:
                writer._gate.set()
            return lookup, await asyncio.gather(*inserts)

    before = items.get_metadata()["version"]
    with override_settings(ROOT_URLCONF=urls):
        lookup, inserted = asyncio.run(go())
    assert lookup.status_code == 200 and lookup.json()["name"] == "there"
    assert [r.status_code for r in inserted] == [200] * 16
    assert [r.json()["name_upper"] for r in inserted] == [f"W{k}" for k in keys]
    assert items.get_metadata()["version"] == before + 1  # one insert call for the sixteen requests


def test_a_timed_out_call_that_never_got_a_thread_never_runs_and_one_that_started_finishes():
    """run_in_pool_with_timeout on a busy pool: the queued call is cancelled (started=False) and never runs; a call
    that was running when the time ran out (started=True) still finishes in its thread."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from pxtserve.errors import CallTimedOut
    from pxtserve.executor import run_in_pool_with_timeout

    pool = ThreadPoolExecutor(max_workers=1)
    release, ran = threading.Event(), []

    def busy() -> None:
        release.wait(10)
        ran.append("busy")

    async def go() -> tuple[bool, bool]:
        running = asyncio.ensure_future(run_in_pool_with_timeout(0.2, busy, pool=pool))
        await asyncio.sleep(0.05)  # `busy` holds the pool's only thread
        try:
            await run_in_pool_with_timeout(0.2, ran.append, "queued", pool=pool)
        except CallTimedOut as exc:
            queued_started = exc.started
        try:
            await running
        except CallTimedOut as exc:
            busy_started = exc.started
        return queued_started, busy_started

    try:
        assert asyncio.run(go()) == (False, True)
        release.set()
        pool.shutdown(wait=True)
        assert ran == ["busy"]  # the running call finished; the queued one never ran
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_a_timed_out_call_says_whether_it_started_and_a_queued_one_never_runs():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import pytest

    from pxtserve.errors import CallTimedOut
    from pxtserve.executor import run_in_pool_with_timeout

    began, release, ran = threading.Event(), threading.Event(), []

    def blocking() -> str:
        began.set()
        release.wait(10)
        return "released"

    def boom() -> None:
        raise ValueError("from the pool thread")

    async def go() -> None:
        with ThreadPoolExecutor(max_workers=1) as pool:
            assert await run_in_pool_with_timeout(5.0, lambda: "quick", pool=pool) == "quick"
            assert await run_in_pool_with_timeout(None, lambda: "no limit", pool=pool) == "no limit"
            with pytest.raises(ValueError, match="from the pool thread"):
                await run_in_pool_with_timeout(5.0, boom, pool=pool)
            running = asyncio.ensure_future(run_in_pool_with_timeout(0.5, blocking, pool=pool))
            while not began.is_set():  # until the only thread runs it
                await asyncio.sleep(0.01)
            # the only thread is busy: this one times out while queued
            with pytest.raises(CallTimedOut) as queued:
                await run_in_pool_with_timeout(0.1, ran.append, "queued", pool=pool)
            assert queued.value.started is False
            with pytest.raises(CallTimedOut) as started:
                await running
            assert started.value.started is True
            release.set()
        assert ran == []  # the queued call was cancelled before it started

    asyncio.run(go())
