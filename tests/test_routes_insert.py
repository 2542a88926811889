"""Insert routes over HTTP: defaults, computed columns, validation and Pixeltable errors."""

import json

import pytest

SERVICE = """
[[service]]
name = "t"
[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items/short"
inputs = ["id", "name"]
outputs = ["id", "name_upper"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.fragile"
path = "/fragile"
"""


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def test_insert_returns_all_columns_with_computed(serve, new_id):
    client = serve(SERVICE)
    key = new_id()
    r = post(client, "/items", {"id": key, "name": "ada", "score": 1.5, "meta": {"k": [1, 2]}, "tag": "x"})
    assert r.status_code == 200, r.content
    assert r.json() == {
        "id": key,
        "name": "ada",
        "score": 1.5,
        "meta": {"k": [1, 2]},
        "tag": "x",
        "name_upper": "ADA",
        "score_double": 3.0,
    }


def test_insert_nullable_inputs_default_to_null(serve, new_id):
    client = serve(SERVICE)
    key = new_id()
    r = post(client, "/items", {"id": key, "name": "bo"})
    assert r.status_code == 200, r.content
    assert r.json()["score"] is None and r.json()["score_double"] is None and r.json()["name_upper"] == "BO"


def test_insert_declared_inputs_and_outputs(serve, new_id):
    client = serve(SERVICE)
    key = new_id()
    r = post(client, "/items/short", {"id": key, "name": "cy"})
    assert r.status_code == 200
    assert r.json() == {"id": key, "name_upper": "CY"}
    # a column that is not an input of this route is refused, not silently dropped
    r = post(client, "/items/short", {"id": new_id(), "name": "cy", "tag": "nope"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "tag"


def test_insert_wrong_type_and_missing_field_name_the_field(serve, new_id):
    client = serve(SERVICE)
    r = post(client, "/items", {"id": "not-a-number", "score": 1.0})
    assert r.status_code == 422
    fields = {e["loc"][-1]: e["type"] for e in r.json()["detail"]}
    assert fields == {"id": "int_parsing", "name": "missing"}


def test_a_boolean_for_a_number_is_refused_naming_the_field(serve, new_id):
    client = serve(SERVICE)
    key = new_id()
    r = post(client, "/items", {"id": key, "name": "b", "score": True})
    assert r.status_code == 422, r.content
    [error] = r.json()["detail"]
    assert error["loc"][-1] == "score" and "got a boolean" in error["msg"]
    r = post(client, "/items", {"id": False, "name": "b"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "id"
    # nothing was stored for either request; numbers as such still go in
    assert post(client, "/items", {"id": key, "name": "b", "score": 1}).json()["score"] == 1.0


def test_insert_duplicate_primary_key_is_a_client_error_with_pixeltable_code(serve, new_id):
    client = serve(SERVICE)
    key = new_id()
    assert post(client, "/items", {"id": key, "name": "a"}).status_code == 200
    r = post(client, "/items", {"id": key, "name": "b"})
    assert 400 <= r.status_code < 500
    detail = r.json()["detail"]
    assert detail["error_code"] == "CONSTRAINT_VIOLATION"
    assert "Duplicate primary key" in detail["message"]
    # the first row is intact
    import pixeltable as pxt

    t = pxt.get_table("pxtserve_test.items")
    assert t.where(t.id == key).select(t.name).collect()["name"] == ["a"]


def test_insert_computed_column_that_raises_is_not_a_500(serve, new_id):
    client = serve(SERVICE)
    r = post(client, "/fragile", {"id": new_id(), "x": 0})
    assert 400 <= r.status_code < 500, r.content
    assert "x must not be zero" in json.dumps(r.json())
    ok = post(client, "/fragile", {"id": new_id(), "x": 4})
    assert ok.json()["inverse"] == 0.25


def test_openapi_shows_typed_fields(serve):
    client = serve(SERVICE)
    doc = client.get("/openapi.json").json()
    assert "/items" in doc["paths"] and "/items/short" in doc["paths"]
    schemas = doc["components"]["schemas"]
    request = schemas["InsertItemsRequest"]
    assert request["properties"]["id"]["type"] == "integer"
    assert request["required"] == ["id", "name"]
    response = schemas["InsertItemsShortResponse"]
    assert set(response["properties"]) == {"id", "name_upper"}
    assert client.get("/docs").status_code == 200


OUTPUTS_SERVICE = """
[[service]]
name = "t"
[[service.routes]]
type = "insert"
table = "pxtserve_test.outputs"
path = "/outputs"
"""


def strict_json(content: bytes) -> object:
    """Parse as JSON proper: Python's json module otherwise accepts NaN and Infinity."""

    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(content, parse_constant=refuse)


def test_non_finite_float_output_is_null_in_valid_json(serve, new_id):
    client = serve(OUTPUTS_SERVICE)
    key = new_id()
    r = post(client, "/outputs", {"id": key, "x": 10.0})
    assert r.status_code == 200, r.content
    body = strict_json(r.content)
    assert body["x"] == 10.0 and body["amplified"] is None
    r = post(client, "/outputs", {"id": new_id(), "x": 2e-308})
    assert strict_json(r.content)["amplified"] == pytest.approx(2.0)


def test_timestamp_output_keeps_microseconds(serve, new_id):
    from datetime import datetime

    client = serve(OUTPUTS_SERVICE)
    r = post(client, "/outputs", {"id": new_id(), "at": "2024-05-06T07:08:09.123456+00:00"})
    assert r.status_code == 200, r.content
    at = datetime.fromisoformat(strict_json(r.content)["at"])
    assert at == datetime.fromisoformat("2024-05-06T07:08:09.123456+00:00")
    assert at.microsecond == 123456
