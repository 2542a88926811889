"""pxtserve.route_operation: a route's Ninja operation runs without Ninja's response made in advance; other
operations of the same router (a view of the site's own, one that takes Ninja's `response`) keep Ninja's."""

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
