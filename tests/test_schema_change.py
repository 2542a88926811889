"""A route registered on a table whose schema later changed answers 409 instead of a stale contract."""

import json

import pixeltable as pxt
from django.test import override_settings

from .conftest import service_from_toml, serving


@override_settings(PXTSERVE={"SCHEMA_CHECK_INTERVAL": 0})
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


@override_settings(PXTSERVE={"SCHEMA_CHECK_INTERVAL": 3600})
def test_between_checks_a_failing_call_still_detects_the_change(pxt_tables, new_id):
    """The schema is re-read at most once per interval, but at once when a Pixeltable call fails."""
    t = pxt.create_table(
        "pxtserve_test.changing2", {"id": pxt.Required[pxt.Int], "a": pxt.String}, primary_key="id", if_exists="replace"
    )
    text = """
[[service]]
name = "c2"
[[service.routes]]
type = "insert"
table = "pxtserve_test.changing2"
path = "/c"
"""
    with serving(service_from_toml(text)) as client:
        assert client.post("/c", json.dumps({"id": 1, "a": "x"}), content_type="application/json").status_code == 200
        t.drop_column("a")
        r = client.post("/c", json.dumps({"id": 2, "a": "y"}), content_type="application/json")
        assert r.status_code == 409, r.content
