"""pxtserve.inline_reads: a read runs on the event loop's thread when it is the only request in flight and its
route's last call was short, on the call pool otherwise; a client that goes away while its read waits for a pool
thread still cancels it (the call's wait listens, pxtserve.executor)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import override_settings

from .test_limits import asgi_app, urlconf_for
from .test_metrics import Server, _start, _stop, value
from .test_routes_query import SERVICE  # an insert route at /items and a GET one_row lookup at /lookup


@pytest.fixture
def fetch_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread each query route's Pixeltable call ran on, in order."""
    from pxtserve.routes.query import QueryOperation

    names: list[str] = []
    fetch = QueryOperation.fetch

    def recorded(self: Any, inputs: dict[str, Any]) -> Any:
        names.append(threading.current_thread().name)
        return fetch(self, inputs)

    monkeypatch.setattr(QueryOperation, "fetch", recorded)
    return names


def lookups(key: int, n: int, before: Any = None) -> list[httpx.Response]:
    """`n` sequential lookups through the ASGI application; `before()` is awaited first, inside the loop."""

    async def go() -> list[httpx.Response]:
        if before is not None:
            await before()
        transport = httpx.ASGITransport(app=asgi_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return [await client.get("/lookup", params={"id": key}) for _ in range(n)]

    return asyncio.run(go())


# a limit no call here comes near: which thread runs a call then depends on nothing timed
LONG = {"INLINE_READ_SECONDS": 60.0}


def test_a_lone_read_runs_on_the_loops_thread_after_its_first_call(pxt_tables, new_id, fetch_threads):
    key = new_id()
    pxt_tables.items.insert([{"id": key, "name": "inline"}])
    with override_settings(ROOT_URLCONF=urlconf_for(SERVICE), PXTSERVE=LONG):
        responses = lookups(key, 3)
    assert [r.json() for r in responses] == [{"id": key, "name": "inline", "name_upper": "INLINE"}] * 3
    # the first call is timed on the pool; the next ones, alone and short, run on the loop's thread (this one)
    loop_thread = threading.current_thread().name
    assert fetch_threads[0].startswith("pxtserve-call") and fetch_threads[1:] == [loop_thread, loop_thread]


@pytest.mark.parametrize("limit", [0.0, 1e-9])
def test_a_read_slower_than_the_limit_or_with_inline_reads_off_stays_on_the_pool(
    pxt_tables, new_id, fetch_threads, limit
):
    key = new_id()
    pxt_tables.items.insert([{"id": key, "name": "pooled"}])
    with override_settings(ROOT_URLCONF=urlconf_for(SERVICE), PXTSERVE={"INLINE_READ_SECONDS": limit}):
        responses = lookups(key, 3)
    assert [r.status_code for r in responses] == [200] * 3
    assert len(fetch_threads) == 3 and all(name.startswith("pxtserve-call") for name in fetch_threads)


def test_a_read_while_another_request_is_in_flight_keeps_the_hop(pxt_tables, new_id, fetch_threads):
    """An insert waits for its table's held writer: a lookup meanwhile goes to the pool, though it ran inline
    before; once the insert is done, the next lookup is inline again."""
    from pxtserve.tables import TableInfo
    from pxtserve.writes import writer_for

    items = pxt_tables.items
    writer = writer_for(TableInfo.of(items))
    key, written = new_id(), new_id()
    items.insert([{"id": key, "name": "there"}])

    async def go() -> list[int]:
        transport = httpx.ASGITransport(app=asgi_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            statuses = [(await client.get("/lookup", params={"id": key})).status_code for _ in range(2)]
            writer._gate.clear()
            try:
                insert = asyncio.create_task(client.post("/items", json={"id": written, "name": "w"}))
                while not writer._queue:
                    await asyncio.sleep(0.01)
                statuses.append((await client.get("/lookup", params={"id": key})).status_code)
            finally:
                writer._gate.set()
            statuses.append((await insert).status_code)
            statuses.append((await client.get("/lookup", params={"id": key})).status_code)
            return statuses

    with override_settings(ROOT_URLCONF=urlconf_for(SERVICE), PXTSERVE=LONG):
        assert asyncio.run(go()) == [200] * 5
    loop_thread = threading.current_thread().name
    assert fetch_threads[1] == loop_thread  # alone: inline
    assert fetch_threads[2].startswith("pxtserve-call")  # beside the waiting insert: on the pool
    assert fetch_threads[3] == loop_thread  # alone again


def test_a_loop_thread_whose_pixeltable_runtime_adopted_the_running_loop_keeps_the_hop(
    pxt_tables, new_id, fetch_threads
):
    """Pixeltable's runtime takes a running loop as its own when it first needs one there; a call inline would then
    run that loop inside itself. Such a thread's reads stay on the pool (and answer)."""
    from pixeltable.runtime import get_runtime

    key = new_id()
    pxt_tables.items.insert([{"id": key, "name": "adopted"}])
    outcome: dict[str, Any] = {}

    async def adopt() -> None:
        assert get_runtime().event_loop is asyncio.get_running_loop()

    def in_new_thread() -> None:  # a thread whose runtime has no loop yet
        with override_settings(ROOT_URLCONF=urlconf_for(SERVICE), PXTSERVE=LONG):
            outcome["responses"] = lookups(key, 3, before=adopt)

    thread = threading.Thread(target=in_new_thread, name="adopting-loop")
    thread.start()
    thread.join(60)
    assert [r.status_code for r in outcome["responses"]] == [200] * 3
    assert all(name.startswith("pxtserve-call") for name in fetch_threads), fetch_threads


# --- over HTTP: a client that goes away ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_thread_server(pxt_tables, tmp_path_factory) -> Iterator[Server]:
    """`serve` with a call pool of one thread (and the metrics service's /slow GET query route)."""
    from tests.processes import wait_until_up

    server = _start(tmp_path_factory.mktemp("inline-one-thread"), "--no-workers", PXTSERVE_POOL_SIZE="1")
    try:
        wait_until_up(f"{server.base}/docs", server.process, 120, server.output)
        yield server
    finally:
        _stop(server)


def _scrape_until(server: Server, done: Any, what: str) -> dict[Any, float]:
    deadline = time.monotonic() + 30
    while not done(samples := server.scrape()):
        assert time.monotonic() < deadline, f"{what}: {samples}"
        time.sleep(0.1)
    return samples


def test_a_client_that_goes_away_while_its_read_waits_for_a_thread_cancels_it(one_thread_server, pxt_tables, new_id):
    server = one_thread_server
    key = new_id()
    pxt_tables.items.insert([{"id": key, "name": "held"}])
    slow = f"{server.base}/slow"
    holder = threading.Thread(target=httpx.get, args=(slow,), kwargs={"params": {"id": key, "seconds": 3}})
    holder.start()
    try:

        def holding(samples: dict[Any, float]) -> bool:
            return value(samples, "pxtserve_pixeltable_pool_in_use") >= 1

        _scrape_until(server, holding, "the slow read never held the pool's thread")
        # a second read queues for that thread; its client then goes away
        path = Path(httpx.URL(slow).path)
        with socket.create_connection(("127.0.0.1", httpx.URL(slow).port)) as conn:
            conn.sendall(f"GET {path}?id={key}&seconds=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())

            def both_in_flight(samples: dict[Any, float]) -> bool:
                return value(samples, "pxtserve_requests_in_flight", route="/api/slow") == 2

            _scrape_until(server, both_in_flight, "the second read never was in flight")
    finally:
        holder.join(60)

    def settled(samples: dict[Any, float]) -> bool:
        return value(samples, "pxtserve_requests_in_flight", route="/api/slow") == 0

    samples = _scrape_until(server, settled, "a read stayed in flight")
    # the one that went away was cancelled (nginx's 499) before it got the thread; the holder answered
    slow_route = {"route": "/api/slow", "method": "GET"}
    assert value(samples, "pxtserve_requests_total", **slow_route, status="499") == 1, samples
    assert value(samples, "pxtserve_requests_total", **slow_route, status="200") == 1, samples
