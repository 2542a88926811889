"""Update and delete routes over HTTP."""

import json

import pixeltable as pxt

SERVICE = """
[[service]]
name = "t"
[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"

[[service.routes]]
type = "update"
table = "pxtserve_test.items"
path = "/items/update"

[[service.routes]]
type = "update"
table = "pxtserve_test.items"
path = "/items/rename"
inputs = ["name"]
outputs = ["id", "name", "name_upper"]

[[service.routes]]
type = "delete"
table = "pxtserve_test.items"
path = "/items/delete"

[[service.routes]]
type = "delete"
table = "pxtserve_test.items"
path = "/items/delete-by-tag-and-name"
match_columns = ["tag", "name"]
"""


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def test_update_recomputes_dependent_columns(serve, new_id):
    client = serve(SERVICE)
    key = new_id()
    post(client, "/items", {"id": key, "name": "old", "score": 1.0, "tag": "t"})
    r = post(client, "/items/rename", {"id": key, "name": "new"})
    assert r.status_code == 200, r.content
    assert r.json() == {"id": key, "name": "new", "name_upper": "NEW"}


def test_update_default_inputs_exclude_pk_and_computed(serve, new_id):
    client = serve(SERVICE)
    doc = client.get("/openapi.json").json()
    props = doc["components"]["schemas"]["UpdateItemsUpdateRequest"]["properties"]
    assert set(props) == {"id", "name", "score", "meta", "tag"}
    key = new_id()
    post(client, "/items", {"id": key, "name": "n", "score": 2.0, "tag": "keep"})
    # only the fields sent change; the others keep their values
    r = post(client, "/items/update", {"id": key, "score": 5.0})
    assert r.status_code == 200, r.content
    assert r.json()["score_double"] == 10.0 and r.json()["tag"] == "keep" and r.json()["name"] == "n"
    # an explicit null clears a nullable column
    r = post(client, "/items/update", {"id": key, "tag": None})
    assert r.json()["tag"] is None


def test_update_unknown_key_is_404(serve, new_id):
    client = serve(SERVICE)
    r = post(client, "/items/rename", {"id": new_id(), "name": "x"})
    assert r.status_code == 404
    assert r.json()["detail"]["error_code"] == "ROW_NOT_FOUND"


def test_update_requires_the_primary_key(serve):
    client = serve(SERVICE)
    r = post(client, "/items/rename", {"name": "x"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "id"


def test_update_non_nullable_column_refuses_null(serve, new_id):
    client = serve(SERVICE)
    key = new_id()
    post(client, "/items", {"id": key, "name": "n"})
    r = post(client, "/items/rename", {"id": key, "name": None})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "name"


def test_delete_by_primary_key(serve, new_id):
    client = serve(SERVICE)
    key = new_id()
    post(client, "/items", {"id": key, "name": "gone"})
    assert post(client, "/items/delete", {"id": key}).json() == {"num_rows": 1}
    assert post(client, "/items/delete", {"id": key}).json() == {"num_rows": 0}
    t = pxt.get_table("pxtserve_test.items")
    assert t.where(t.id == key).count() == 0


def test_delete_match_columns_are_anded(serve, new_id):
    client = serve(SERVICE)
    a, b, c = new_id(), new_id(), new_id()
    post(client, "/items", {"id": a, "name": "x", "tag": "del-and"})
    post(client, "/items", {"id": b, "name": "x", "tag": "del-and"})
    post(client, "/items", {"id": c, "name": "y", "tag": "del-and"})
    r = post(client, "/items/delete-by-tag-and-name", {"tag": "del-and", "name": "x"})
    assert r.json() == {"num_rows": 2}
    t = pxt.get_table("pxtserve_test.items")
    assert t.where(t.tag == "del-and").select(t.id).collect()["id"] == [c]


def test_delete_requires_every_match_value(serve):
    client = serve(SERVICE)
    r = post(client, "/items/delete-by-tag-and-name", {"tag": "del-and"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "name"
    # null is not a wildcard
    r = post(client, "/items/delete-by-tag-and-name", {"tag": "del-and", "name": None})
    assert r.status_code == 422
