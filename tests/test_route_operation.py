"""pxtserve.route_operation: a route's Ninja operation runs without Ninja's response made in advance; other
operations of the same router (a view of the site's own, one that takes Ninja's `response`) keep Ninja's."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja.operation import AsyncOperation, Operation

from pxtserve import PixeltableRouter
from pxtserve.route_operation import RouteRun
from tests.pxt_app import queries

from .conftest import mounted


def ninja_operations(router: PixeltableRouter) -> dict[str, object]:
    return {op.path: op for view in router.path_operations.values() for op in view.operations}


def test_route_operations_answer_as_before_and_the_sites_own_keep_ninjas(pxt_tables, new_id):
    router = PixeltableRouter()
    router.add_insert_route(pxt_tables.items, path="/items", inputs=["id", "name"], outputs=["id", "name"])
    router.add_query_route(path="/one", query=queries.item_by_id, one_row=True, method="get")

    @router.get("/plain")
    async def plain(request: HttpRequest, response: HttpResponse) -> dict[str, str]:
        response["X-Set-By-View"] = "yes"  # Ninja's temporal response: the view sets a header on it
        return {"plain": "data"}

    @router.get("/sync")
    def sync(request: HttpRequest) -> dict[str, bool]:
        return {"sync": True}

    operations = ninja_operations(router)
    assert isinstance(operations["/items"], RouteRun) and isinstance(operations["/one"], RouteRun)
    assert not isinstance(operations["/plain"], RouteRun) and isinstance(operations["/plain"], AsyncOperation)
    assert not isinstance(operations["/sync"], RouteRun | AsyncOperation) and isinstance(operations["/sync"], Operation)
    with mounted(router) as client:
        key = new_id()
        r = client.post("/api/pxt/items", {"id": key, "name": "routed"}, content_type="application/json")
        assert r.status_code == 200 and r.json() == {"id": key, "name": "routed"}, r.content
        assert client.get(f"/api/pxt/one?id={key}").json() == {"id": key, "name": "routed", "name_upper": "ROUTED"}
        # Ninja's validation, unchanged: a 422 naming the parameter
        bad = client.get("/api/pxt/one?id=abc")
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "id", bad.content
        plain_answer = client.get("/api/pxt/plain")
        assert plain_answer.json() == {"plain": "data"} and plain_answer["X-Set-By-View"] == "yes"
        assert client.get("/api/pxt/sync").json() == {"sync": True}


def test_a_query_string_is_parsed_as_ninja_parses_it_and_what_does_not_validate_goes_through_ninja(pxt_tables):
    """pxtserve.route_operation.query_values against Ninja's own `_get_values` (QueryDict): repeated keys (the last
    wins), percent- and plus-decoding, blank values, bytes that are not UTF-8; None (Ninja's path, its 422) for
    what does not validate."""
    from django.test import RequestFactory, override_settings

    from pxtserve.intake import ninja_operation
    from pxtserve.route_operation import query_values

    router = PixeltableRouter()
    router.add_query_route(path="/by-tag", query=queries.items_by_tag, method="get")
    router.add_query_route(path="/one", query=queries.item_by_id, one_row=True, method="get")
    factory = RequestFactory()
    by_tag, one = "/api/pxt/by-tag", "/api/pxt/one"
    same = [
        (by_tag, "tag=a"),
        (by_tag, "tag=a&tag=b&tag=c"),
        (by_tag, "tag=%C3%A9t%C3%A9+x%2By&limit=3"),
        (by_tag, "tag="),
        (by_tag, "tag"),
        (by_tag, "tag=%FF%ZZ&&tag=last;x"),
        (by_tag, "limit=2&tag=a&limit=4"),
        (one, "id=7&id=%2042"),
    ]
    refused = [(one, "id=abc"), (one, ""), (one, "id="), (by_tag, "limit=2"), (by_tag, "tag=a&limit=x")]
    with mounted(router) as client:  # the mounted copies of the operations, which know their API

        def operation_and_request(path: str, query: str) -> tuple[Any, Any]:
            request = factory.get(path, QUERY_STRING=query)
            return ninja_operation(request), request

        for path, query in same:
            operation, request = operation_and_request(path, query)
            ours = query_values(operation, request, {})
            assert ours is not None and ours == operation._get_values(request, {}, None), query
        for path, query in refused:
            assert query_values(*operation_and_request(path, query), {}) is None, query
        bad = client.get("/api/pxt/one?id=abc")
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "id"], bad.content
        with override_settings(DATA_UPLOAD_MAX_NUMBER_FIELDS=2):  # Django's 400, from Ninja's path
            assert query_values(*operation_and_request(by_tag, "tag=a&tag=b&tag=c"), {}) is None
            assert client.get("/api/pxt/by-tag?tag=a&tag=b&tag=c").status_code == 400
