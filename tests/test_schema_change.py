"""A route registered on a table whose schema later changed answers 409 instead of a stale contract."""

import json

import pixeltable as pxt

from .conftest import serving, service_from_toml


def test_schema_change_after_registration_answers_409(pxt_tables, new_id):
    t = pxt.create_table(
        "pxtserve_test.changing", {"id": pxt.Required[pxt.Int], "a": pxt.String}, primary_key="id", if_exists="replace"
    )
    text = """
[[service]]
name = "c"
[[service.routes]]
type = "insert"
table = "pxtserve_test.changing"
path = "/c"
[[service.routes]]
type = "delete"
table = "pxtserve_test.changing"
path = "/c/delete"
"""
    with serving(service_from_toml(text)) as client:
        ok = client.post("/c", json.dumps({"id": 1, "a": "x"}), content_type="application/json")
        assert ok.status_code == 200
        t.add_column(b=pxt.Int | None)
        r = client.post("/c", json.dumps({"id": 2, "a": "y"}), content_type="application/json")
        assert r.status_code == 409
        assert "restart" in r.json()["detail"]["message"]
        # a dropped table is a changed schema too
        pxt.drop_table("pxtserve_test.changing")
        r = client.post("/c/delete", json.dumps({"id": 1}), content_type="application/json")
        assert r.status_code == 409
