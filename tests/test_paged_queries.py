"""Paged query routes (`page_size`): pages cut by Pixeltable, signed cursors, limit bounds, GET and POST.

The HTTP behaviour runs against one real `manage.py serve` process for the module; the declaration checks
and the query with its own limit use the Django test client.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.core import signing

from pxtserve.errors import RouteDefinitionError

from .conftest import mounted
from .processes import REPO, free_port, serve_env, stop_group, wait_until_up

SERVICE = """
[[service]]
name = "paged"
modules = ["tests.pxt_app.batch_schema"]

[[service.routes]]
type = "query"
path = "/all"
query = "tests.pxt_app.batch_schema.paged_by_tag"

[[service.routes]]
type = "query"
path = "/pages"
query = "tests.pxt_app.batch_schema.paged_by_tag"
page_size = 5

[[service.routes]]
type = "query"
path = "/pages"
method = "get"
query = "tests.pxt_app.batch_schema.paged_by_tag"
page_size = 5

[[service.routes]]
type = "query"
path = "/other-pages"
query = "tests.pxt_app.batch_schema.paged_by_tag"
page_size = 5

[[service.routes]]
type = "query"
path = "/ns"
query = "tests.pxt_app.batch_schema.paged_ns"
page_size = 10

[[service.routes]]
type = "query"
path = "/ids"
query = "tests.pxt_app.batch_schema.paged_ids"
page_size = 10
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import tests.pxt_app.batch_schema  # noqa: F401 - the tables exist before the server starts

    tmp = tmp_path_factory.mktemp("paged")
    (tmp / "paged.toml").write_text(SERVICE)
    port = free_port()
    command = [sys.executable, "manage.py", "serve", "paged", "--config", str(tmp / "paged.toml")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-workers"]
    with open(tmp / "out.log", "w") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=serve_env(tmp), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/healthz", process, output=(tmp / "out.log").read_text)
        yield url
    finally:
        stop_group(process)


def pages(fetch: Any, **args: Any) -> tuple[list[Any], list[int]]:
    """Every row of every page, following next_cursor; and each page's size."""
    rows: list[Any] = []
    sizes: list[int] = []
    cursor = None
    while True:
        body = fetch({**args, **({"cursor": cursor} if cursor else {})})
        rows += body["rows"]
        sizes.append(len(body["rows"]))
        cursor = body["next_cursor"]
        if cursor is None:
            return rows, sizes
        assert len(sizes) < 50, "the cursors do not end"


def post_ok(base: str, path: str) -> Any:
    def fetch(body: dict[str, Any]) -> Any:
        r = httpx.post(base + path, json=body)
        assert r.status_code == 200, r.text
        return r.json()

    return fetch


def test_post_pages_add_up_to_the_unpaged_answer(base):
    unpaged = httpx.post(f"{base}/all", json={"tag": "p"}).json()
    assert set(unpaged) == {"rows"} and len(unpaged["rows"]) == 23  # without page_size: the answer as before
    rows, sizes = pages(post_ok(base, "/pages"), tag="p")
    assert rows == unpaged["rows"]
    assert sizes == [5, 5, 5, 5, 3]


def test_get_pages_with_a_smaller_limit(base):
    def fetch(params: dict[str, Any]) -> Any:
        r = httpx.get(f"{base}/pages", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    rows, sizes = pages(fetch, tag="p", limit=4)
    assert rows == httpx.post(f"{base}/all", json={"tag": "p"}).json()["rows"]
    assert sizes == [4, 4, 4, 4, 4, 3]


def test_an_exact_last_page_has_no_next_cursor(base):
    # 4 rows, limit 4: the extra row fetched tells there is none after
    body = httpx.post(f"{base}/pages", json={"tag": "q", "limit": 4}).json()
    assert len(body["rows"]) == 4 and body["next_cursor"] is None
    assert httpx.post(f"{base}/pages", json={"tag": "none"}).json() == {"rows": [], "next_cursor": None}


def test_another_page_size(base):
    rows, sizes = pages(post_ok(base, "/ids"), tag="p")
    assert rows == [{"id": i} for i in range(23)] and sizes == [10, 10, 3]


def test_a_scalar_querys_pages_are_values(base):
    rows, sizes = pages(post_ok(base, "/ns"), tag="p")
    assert rows == [i * i for i in range(23)] and sizes == [10, 10, 3]


@pytest.mark.parametrize("limit", [0, 6, -1])
def test_limit_out_of_bounds_is_a_422(base, limit):
    r = httpx.post(f"{base}/pages", json={"tag": "p", "limit": limit})
    assert r.status_code == 422, r.text
    assert any(item["loc"][-1] == "limit" for item in r.json()["detail"]), r.text


def cursor_error(r: httpx.Response) -> str:
    assert r.status_code == 422, r.text
    [item] = [item for item in r.json()["detail"] if item["loc"][-1] == "cursor"]
    return item["msg"]


def test_a_tampered_cursor_is_a_422_naming_cursor(base):
    cursor = httpx.post(f"{base}/pages", json={"tag": "p"}).json()["next_cursor"]
    payload, _, signature = cursor.rpartition(":")
    forged = signing.dumps({"o": 0, "d": "x"}, salt="pxtserve.paging:post /pages", key="not-the-servers-key")
    for bad in [f"{payload}:{signature[:-2]}xx", "garbage", forged]:
        assert "not a cursor of this route" in cursor_error(
            httpx.post(f"{base}/pages", json={"tag": "p", "cursor": bad})
        )
    r = httpx.get(f"{base}/pages", params={"tag": "p", "cursor": "garbage"})
    assert "not a cursor of this route" in cursor_error(r)


def test_a_cursor_from_other_inputs_or_another_route_is_a_422(base):
    cursor = httpx.post(f"{base}/pages", json={"tag": "p"}).json()["next_cursor"]
    msg = cursor_error(httpx.post(f"{base}/pages", json={"tag": "q", "cursor": cursor}))
    assert "other query arguments" in msg
    # same query, same page size, another route: its salt differs
    msg = cursor_error(httpx.post(f"{base}/other-pages", json={"tag": "p", "cursor": cursor}))
    assert "not a cursor of this route" in msg
    # and the same cursor still works where it came from
    assert httpx.post(f"{base}/pages", json={"tag": "p", "cursor": cursor}).status_code == 200


def test_openapi_documents_the_page(base):
    doc = httpx.get(f"{base}/openapi.json").json()
    schemas = doc["components"]["schemas"]
    page = schemas["QueryPagesPage"]
    assert set(page["properties"]) == {"rows", "next_cursor"}
    request = schemas["QueryPagesRequest"]["properties"]
    assert request["limit"]["maximum"] == 5 and request["limit"]["default"] == 5


# --- declarations, and a query with its own limit (Django test client) ---------------------------------------


def test_a_querys_own_limit_caps_the_pages(pxt_tables):
    from pxtserve import PixeltableRouter
    from tests.pxt_app import batch_schema

    router = PixeltableRouter()
    router.add_query_route(path="/capped", query=batch_schema.paged_by_tag_capped, page_size=3)
    router.add_query_route(path="/capped/all", query=batch_schema.paged_by_tag_capped)
    with mounted(router) as client:

        def fetch(body: dict[str, Any]) -> Any:
            r = client.post("/api/pxt/capped", json.dumps(body), content_type="application/json")
            assert r.status_code == 200, r.content
            return r.json()

        for cap in (7, 6, 2):
            unpaged = client.post("/api/pxt/capped/all", json.dumps({"tag": "p", "cap": cap}), "application/json")
            rows, _ = pages(fetch, tag="p", cap=cap)
            assert rows == unpaged.json()["rows"] and len(rows) == cap


def test_page_size_declaration_errors(pxt_tables):
    from pxtserve import PixeltableRouter

    router = PixeltableRouter()
    by_tag = "tests.pxt_app.batch_schema.paged_by_tag"
    with pytest.raises(RouteDefinitionError, match="not with one_row") as info:
        router.add_query_route(path="/one", query=by_tag, page_size=5, one_row=True)
    assert info.value.field == "page_size"
    with pytest.raises(RouteDefinitionError, match="page_size"):
        router.add_query_route(path="/zero", query=by_tag, page_size=0)
    # items_by_tag has a parameter called limit: as a request field it would clash with the page's
    with pytest.raises(RouteDefinitionError, match="parameter 'limit'"):
        router.add_query_route(path="/clash", query="tests.pxt_app.queries.items_by_tag", page_size=5)
    # left out of the inputs, it keeps its default, and the route pages
    router.add_query_route(path="/ok", query="tests.pxt_app.queries.items_by_tag", inputs=["tag"], page_size=5)
