"""Query routes over HTTP: GET and POST, one_row, defaults, the rows envelope."""

import json

SERVICE = """
[[service]]
name = "t"
[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"

[[service.routes]]
type = "query"
path = "/lookup"
query = "tests.pxt_app.queries.item_by_id"
one_row = true
method = "get"

[[service.routes]]
type = "query"
path = "/by-tag"
query = "tests.pxt_app.queries.items_by_tag"

[[service.routes]]
type = "query"
path = "/by-tag/one"
query = "tests.pxt_app.queries.items_by_tag"
one_row = true

[[service.routes]]
type = "query"
path = "/by-tag/get"
query = "tests.pxt_app.queries.items_by_tag"
method = "get"
inputs = ["tag"]
"""


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def test_get_one_row_lookup(serve, new_id):
    client = serve(SERVICE)
    key = new_id()
    post(client, "/items", {"id": key, "name": "q"})
    r = client.get(f"/lookup?id={key}")
    assert r.status_code == 200
    assert r.json() == {"id": key, "name": "q", "name_upper": "Q"}


def test_one_row_none_is_404_and_many_is_409(serve, new_id):
    client = serve(SERVICE)
    assert client.get(f"/lookup?id={new_id()}").status_code == 404
    tag = f"many-{new_id()}"
    post(client, "/items", {"id": new_id(), "name": "a", "tag": tag})
    post(client, "/items", {"id": new_id(), "name": "b", "tag": tag})
    r = post(client, "/by-tag/one", {"tag": tag})
    assert r.status_code == 409
    assert "2 rows" in r.json()["detail"]["message"]


def test_post_rows_envelope_with_parameter_default(serve, new_id):
    client = serve(SERVICE)
    tag = f"env-{new_id()}"
    keys = [new_id() for _ in range(3)]
    for k in keys:
        post(client, "/items", {"id": k, "name": f"n{k}", "tag": tag})
    r = post(client, "/by-tag", {"tag": tag})
    assert r.json() == {"rows": [{"id": k, "name": f"n{k}", "tag": tag} for k in keys]}
    r = post(client, "/by-tag", {"tag": tag, "limit": 2})
    assert [row["id"] for row in r.json()["rows"]] == keys[:2]


def test_get_query_string_validation(serve, new_id):
    client = serve(SERVICE)
    assert client.get("/lookup?id=abc").status_code == 422
    assert client.get("/lookup?id=false").status_code == 422
    r = client.get("/lookup")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "id"
    # the parameter left out of inputs takes its default and is not accepted
    tag = f"get-{new_id()}"
    post(client, "/items", {"id": new_id(), "name": "g", "tag": tag})
    assert len(client.get(f"/by-tag/get?tag={tag}").json()["rows"]) == 1
    assert client.post("/lookup").status_code == 405


def test_openapi_lists_query_parameters(serve):
    client = serve(SERVICE)
    doc = client.get("/openapi.json").json()
    params = doc["paths"]["/lookup"]["get"]["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in params] == [("id", "query", True)]
    assert "rows" in doc["components"]["schemas"]["QueryByTagResponse"]["properties"]
