"""Errors of the Pixeltable calls behind each route kind, as the client sees them: a computed column that
raises is a 4xx naming the column on every path (insert, update, compute, background jobs, the writer's
batches), and registration errors name what the declaration said."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pixeltable as pxt
import pytest
from django.test import Client

from pxtserve.config import ServiceConfigError
from pxtserve.errors import RouteDefinitionError
from pxtserve.routes.query import QueryRoute
from pxtserve.service import build_service
from pxtserve.tables import TableInfo
from pxtserve.writes import writer_for

from .conftest import service_from_toml
from .test_writes import run_queued

# the fragile table's computed column `inverse = checked_inverse(x)` raises for x == 0
SERVICE = """
[[service]]
name = "write-errors"
prefix = "/api"

[[service.routes]]
type = "insert"
table = "pxtserve_test.fragile"
path = "/fragile"

[[service.routes]]
type = "update"
table = "pxtserve_test.fragile"
path = "/fragile/update"

[[service.routes]]
type = "compute"
table = "pxtserve_test.fragile"
path = "/fragile/compute"

[[service.routes]]
type = "insert"
table = "pxtserve_test.fragile"
path = "/bg/fragile"
background = true

[[service.routes]]
type = "update"
table = "pxtserve_test.fragile"
path = "/bg/fragile/update"
background = true
"""

NAMED = "computed column 'inverse' failed: "
# what Pixeltable says after the prefix: the expression, what it raised, with which input
RAISED = (
    "In row 0 the expression checked_inverse(x) encountered exception ValueError:\nx must not be zero\nwith 'x' = 0"
)


def post(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


def assert_names_the_column(r: Any) -> None:
    assert r.status_code == 400, r.content
    detail = r.json()["detail"]
    assert detail["error_code"] == "UNSUPPORTED_OPERATION", detail
    assert detail["message"] == NAMED + RAISED, detail


def stored(pxt_tables: Any, key: int) -> list[tuple[int, float]]:
    t = pxt_tables.fragile
    rows = t.where(t.id == key).select(t.x, t.inverse).collect()
    return list(zip(rows["x"], rows["inverse"], strict=True))


@pytest.fixture
def client(serve: Callable[[str], Client]) -> Client:
    return serve(SERVICE)


# --- synchronous routes -----------------------------------------------------------------------------------------


def test_insert_names_the_raising_computed_column(client, pxt_tables, new_id):
    key = new_id()
    assert_names_the_column(post(client, "/api/fragile", {"id": key, "x": 0}))
    assert stored(pxt_tables, key) == []


def test_update_with_a_raising_computed_column_is_a_4xx_naming_it_and_the_row_is_unchanged(client, pxt_tables, new_id):
    key = new_id()
    assert post(client, "/api/fragile", {"id": key, "x": 2}).json() == {"id": key, "x": 2, "inverse": 0.5}
    assert_names_the_column(post(client, "/api/fragile/update", {"id": key, "x": 0}))
    assert stored(pxt_tables, key) == [(2, 0.5)]
    # the table still takes updates
    assert post(client, "/api/fragile/update", {"id": key, "x": 4}).json() == {"id": key, "x": 4, "inverse": 0.25}


def test_compute_names_the_raising_computed_column(client, pxt_tables, new_id):
    key = new_id()
    assert_names_the_column(post(client, "/api/fragile/compute", {"id": key, "x": 0}))
    assert stored(pxt_tables, key) == []


# --- background jobs (django-q2 in sync mode: the job runs inside the submitting request) --------------------------


def job_outcome(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = post(client, path, body)
    assert r.status_code == 202, r.content
    status = client.get(r.json()["job_url"].removeprefix("http://testserver"))
    assert status.status_code == 200, status.content
    body = status.json()
    # when it was submitted, started and finished: present, and not what these tests are about
    assert all(body.pop(stamp) for stamp in ("created_at", "started_at", "finished_at")), body
    return body


JOB_FAILED = {
    "status": "error",
    "error": NAMED + RAISED,
    "error_detail": {"error_code": "UNSUPPORTED_OPERATION", "message": NAMED + RAISED, "retryable": False},
}


@pytest.mark.django_db(transaction=True)
def test_background_update_fails_with_the_synchronous_message_and_the_row_is_unchanged(client, pxt_tables, new_id):
    key = new_id()
    post(client, "/api/fragile", {"id": key, "x": 5})
    assert job_outcome(client, "/api/bg/fragile/update", {"id": key, "x": 0}) == JOB_FAILED
    assert stored(pxt_tables, key) == [(5, 0.2)]


@pytest.mark.django_db(transaction=True)
def test_background_insert_fails_with_the_synchronous_message(client, pxt_tables, new_id):
    key = new_id()
    assert job_outcome(client, "/api/bg/fragile", {"id": key, "x": 0}) == JOB_FAILED
    assert stored(pxt_tables, key) == []


# --- the writer's batches: queued requests go in as one call; a raising row fails only its own request ------------


def queued_posts(pxt_tables: Any, client: Client, path: str, bodies: list[dict[str, Any]]) -> list[Any]:
    """POST every body while the table's writer is held, so that they go in as one batch; the responses."""
    writer = writer_for(TableInfo.of(pxt_tables.fragile))
    # each thread its own client (a test client keeps per-request state); the URLconf override is process-wide
    local = threading.local()

    def call(body: dict[str, Any]) -> Any:
        if not hasattr(local, "client"):
            local.client = Client()
        return post(local.client, path, body)

    results = run_queued(writer, [lambda b=b: call(b) for b in bodies])
    assert [outcome for outcome, _ in results] == ["ok"] * len(bodies), results
    return [response for _, response in results]


def test_a_raising_row_in_a_batch_of_inserts_fails_only_its_own_request(client, pxt_tables, new_id):
    keys = [new_id() for _ in range(4)]
    xs = [1, 0, 2, 4]
    responses = queued_posts(pxt_tables, client, "/api/fragile", [{"id": k, "x": x} for k, x in zip(keys, xs)])
    assert_names_the_column(responses[1])
    for i in (0, 2, 3):
        assert responses[i].status_code == 200, responses[i].content
        assert responses[i].json() == {"id": keys[i], "x": xs[i], "inverse": 1.0 / xs[i]}
    assert [stored(pxt_tables, k) for k in keys] == [[(1, 1.0)], [], [(2, 0.5)], [(4, 0.25)]]


def test_a_raising_row_in_a_batch_of_updates_fails_only_its_own_request(client, pxt_tables, new_id):
    keys = [new_id() for _ in range(4)]
    pxt_tables.fragile.insert([{"id": k, "x": 1} for k in keys])
    xs = [2, 0, 4, 5]
    responses = queued_posts(pxt_tables, client, "/api/fragile/update", [{"id": k, "x": x} for k, x in zip(keys, xs)])
    assert_names_the_column(responses[1])
    for i in (0, 2, 3):
        assert responses[i].status_code == 200, responses[i].content
        assert responses[i].json() == {"id": keys[i], "x": xs[i], "inverse": 1.0 / xs[i]}
    assert [stored(pxt_tables, k) for k in keys] == [[(2, 0.5)], [(1, 1.0)], [(4, 0.25)], [(5, 0.2)]]


# --- registration errors name what the declaration said ------------------------------------------------------------


def test_a_dotted_path_to_something_else_than_a_query_is_named(pxt_tables):
    text = (
        '[[service]]\nname = "svc"\n[[service.routes]]\ntype = "query"\npath = "/q"\n'
        'query = "tests.pxt_app.queries.NOT_A_QUERY"\n'
    )
    with pytest.raises(ServiceConfigError) as info:
        build_service(service_from_toml(text, "svc"))
    assert str(info.value).endswith(
        "route #1 (/q): field 'query': "
        "query 'tests.pxt_app.queries.NOT_A_QUERY' is an int, not a @pxt.query or retrieval_udf function"
    )


def test_an_object_that_is_not_a_query_is_named(pxt_tables):
    with pytest.raises(RouteDefinitionError) as info:
        QueryRoute(path="/q", query=pxt_tables.checked_inverse).build()
    assert info.value.field == "query"
    assert str(info.value) == (
        "query <Pixeltable UDF checked_inverse> is a CallableFunction, not a @pxt.query or retrieval_udf function"
    )


def test_the_pixeltable_error_keeps_its_class_and_code(pxt_tables):
    # the named error is the same kind of pxt.Error: the writer's batch retry and error bodies treat it alike
    info = TableInfo.of(pxt_tables.fragile)
    original = pxt.RequestError(pxt.ErrorCode.UNSUPPORTED_OPERATION, RAISED)
    named = info.naming_the_column(original)
    assert type(named) is pxt.RequestError and named.error_code is original.error_code
    assert named.message == NAMED + RAISED
    unrelated = pxt.RequestError(pxt.ErrorCode.UNSUPPORTED_OPERATION, "something else")
    assert info.naming_the_column(unrelated) is unrelated
