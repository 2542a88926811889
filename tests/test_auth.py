"""API-key auth per service and per route: 401 without a key, 403 with a wrong one, both header forms,
OpenAPI security schemes, and media URLs behind the service's auth."""

import json

import PIL.Image
import pytest
from django.test import override_settings

from pxtserve.config import ServiceConfigError
from pxtserve.service import build_service

from .conftest import service_from_toml

KEYS = {"API_KEYS": ["k-one", "k-two"], "MEDIA_INPUT_DIRS": ["/tmp"]}

PROTECTED = """
[[service]]
name = "sec"
auth = "api_key"
[[service.routes]]
type = "insert"
table = "pxtserve_test.images"
path = "/images"
[[service.routes]]
type = "query"
path = "/lookup"
query = "tests.pxt_app.queries.item_by_id"
method = "get"
one_row = true
auth = "none"
"""

MIXED = """
[[service]]
name = "mixed"
[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"
auth = "api_key"
[[service.routes]]
type = "query"
path = "/lookup"
query = "tests.pxt_app.queries.item_by_id"
method = "get"
one_row = true
"""


@pytest.fixture
def keys():
    with override_settings(PXTSERVE=KEYS):
        yield


def test_service_auth_401_403_and_both_header_forms(keys, serve, new_id, tmp_path):
    client = serve(PROTECTED)
    image = tmp_path / "a.png"
    PIL.Image.new("RGB", (10, 10)).save(image)
    body = json.dumps({"id": new_id(), "image": str(image)})
    r = client.post("/images", body, content_type="application/json")
    assert r.status_code == 401
    r = client.post("/images", body, content_type="application/json", HTTP_AUTHORIZATION="Bearer wrong")
    assert r.status_code == 403 and "invalid API key" in r.json()["detail"]
    r = client.post("/images", body, content_type="application/json", HTTP_X_API_KEY="nope")
    assert r.status_code == 403
    r = client.post("/images", body, content_type="application/json", HTTP_AUTHORIZATION="Bearer k-two")
    assert r.status_code == 200, r.content
    media = r.json()["thumb"].removeprefix("http://testserver")
    # a protected service's media URLs are signed: the URL alone fetches the file; the bare path needs the key
    assert "signature=" in media and client.get(media).status_code == 200
    bare = media.partition("?")[0]
    r = client.get(bare)
    assert r.status_code == 403 and r.json()["detail"]["error_code"] == "MEDIA_SIGNATURE_MISSING"
    assert client.get(bare, HTTP_X_API_KEY="k-one").status_code == 200
    assert client.get(bare, HTTP_X_API_KEY="nope").status_code == 403
    # a route that opts out stays public
    assert client.get(f"/lookup?id={new_id()}").status_code == 404


def test_route_level_auth_on_a_public_service(keys, serve, new_id):
    client = serve(MIXED)
    key = new_id()
    body = json.dumps({"id": key, "name": "s"})
    assert client.post("/items", body, content_type="application/json").status_code == 401
    assert client.post("/items", body, content_type="application/json", HTTP_X_API_KEY="k-one").status_code == 200
    assert client.get(f"/lookup?id={key}").json()["name"] == "s"


def test_openapi_declares_the_schemes(keys, serve):
    client = serve(PROTECTED)
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    assert any(s.get("name") == "X-API-Key" for s in schemes.values())
    assert doc["paths"]["/images"]["post"]["security"]
    assert not doc["paths"]["/lookup"]["get"].get("security")


def test_api_key_auth_without_keys_is_a_configuration_error(pxt_tables):
    with (
        override_settings(PXTSERVE={"API_KEYS": []}),
        pytest.raises(ServiceConfigError, match="field 'auth': auth = \"api_key\" needs keys"),
    ):
        build_service(service_from_toml(PROTECTED))


def test_keys_from_a_named_environment_variable(pxt_tables, serve, monkeypatch, new_id):
    monkeypatch.setenv("SEC_KEYS", "env-key-1, env-key-2")
    client = serve(MIXED.replace('name = "mixed"', 'name = "mixed"\napi_keys_env = "SEC_KEYS"'))
    body = json.dumps({"id": new_id(), "name": "e"})
    r = client.post("/items", body, content_type="application/json", HTTP_AUTHORIZATION="Bearer env-key-2")
    assert r.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_job_status_follows_the_auth_of_the_route_that_made_it(keys, serve, new_id):
    client = serve(
        MIXED
        + """
[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items/bg"
background = true
auth = "api_key"
[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items/bg-public"
background = true
"""
    )
    body = json.dumps({"id": new_id(), "name": "job"})
    r = client.post("/items/bg", body, content_type="application/json", HTTP_X_API_KEY="k-one")
    assert r.status_code == 202, r.content
    job = r.json()["job_url"].removeprefix("http://testserver")
    assert client.get(job).status_code == 401
    assert client.get(job, HTTP_X_API_KEY="bad").status_code == 403
    assert client.get(job, HTTP_X_API_KEY="k-two").json()["status"] == "done"
    public = client.post("/items/bg-public", json.dumps({"id": new_id(), "name": "p"}), content_type="application/json")
    assert client.get(public.json()["job_url"].removeprefix("http://testserver")).json()["status"] == "done"


@pytest.mark.django_db(transaction=True)
def test_a_router_answers_only_its_own_jobs(keys, serve, new_id):
    first = serve(
        MIXED + '[[service.routes]]\ntype = "delete"\ntable = "pxtserve_test.items"\npath = "/d"\nbackground = true\n'
    )
    r = first.post("/d", json.dumps({"id": new_id()}), content_type="application/json")
    job_id = r.json()["id"]
    other = serve(PROTECTED)
    assert other.get(f"/jobs/{job_id}", HTTP_X_API_KEY="k-one").status_code == 404
