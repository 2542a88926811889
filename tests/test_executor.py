"""Pixeltable calls run on a bounded pool the size of Pixeltable's connection pool: no connection per request."""

from __future__ import annotations

import asyncio

import httpx
from django.test import override_settings

from .test_limits import asgi_app, urlconf_for

SERVICE = """
[[service]]
name = "pool"
[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"
[[service.routes]]
type = "query"
path = "/item"
query = "tests.pxt_app.queries.item_by_id"
one_row = true
method = "get"
"""


def concurrent_lookups(key: int, n: int) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=asgi_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await asyncio.gather(*(client.get("/item", params={"id": key}) for _ in range(n)))

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
