"""Request limits and CORS, through the real ASGI stack (the application uvicorn serves)."""

from __future__ import annotations

import asyncio
import json

import httpx
from django.test import override_settings

from .conftest import service_from_toml

SERVICE = """
[[service]]
name = "lim"
[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"
"""


def asgi_app():
    from pxtserve.asgi import build_application

    return build_application()


def request(method: str, path: str, **kwargs):
    async def go():
        transport = httpx.ASGITransport(app=asgi_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def urlconf_for(text: str):
    import types

    from pxtserve.service import build_service

    module = types.ModuleType("limits_urls")
    module.urlpatterns = build_service(service_from_toml(text)).urlpatterns()
    return module


def test_body_over_the_limit_is_413_before_the_view(pxt_tables, new_id):
    urls = urlconf_for(SERVICE)
    with override_settings(ROOT_URLCONF=urls, PXTSERVE={"MAX_REQUEST_BODY": 200}):
        small = request("POST", "/items", json={"id": new_id(), "name": "s"})
        assert small.status_code == 200
        big = request("POST", "/items", json={"id": new_id(), "name": "x" * 1000})
        assert big.status_code == 413
        assert big.json()["detail"]["error_code"] == "REQUEST_TOO_LARGE"

        async def chunks():
            payload = json.dumps({"id": new_id(), "name": "y" * 1000}).encode()
            for i in range(0, len(payload), 100):
                yield payload[i : i + 100]

        # no Content-Length (chunked): counted as it arrives
        chunked = request("POST", "/items", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413


def test_a_request_django_cannot_decode_is_a_json_400_with_a_request_id(pxt_tables):
    # uvicorn refuses such a request line itself; another ASGI server may pass the bytes on
    messages: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/healthz",
        "raw_path": b"/healthz",
        "query_string": b"q=\xff\xfe",  # not UTF-8
        "root_path": "",
        "headers": [(b"host", b"localhost"), (b"x-request-id", b"undecodable-1")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(asgi_app()(scope, receive, send))
    start, body = messages[0], b"".join(m.get("body", b"") for m in messages[1:])
    headers = dict(start["headers"])
    assert start["status"] == 400 and headers[b"x-request-id"] == b"undecodable-1", start
    assert json.loads(body)["detail"]["error_code"] == "BAD_REQUEST", body


def test_cors_is_off_by_default_and_follows_the_setting(pxt_tables):
    urls = urlconf_for(SERVICE)
    origin = {"Origin": "https://app.example.com"}
    with override_settings(ROOT_URLCONF=urls):
        r = request("GET", "/openapi.json", headers=origin)
        assert "access-control-allow-origin" not in r.headers
        # no Origin (pxtserve.headers.CorsMiddleware's shortcut): Vary: origin all the same, as django-cors-headers
        assert request("GET", "/openapi.json").headers["vary"] == r.headers["vary"] == "origin"
    # django-cors-headers' own setting, in the API chain too
    with override_settings(ROOT_URLCONF=urls, CORS_ALLOWED_ORIGINS=["https://app.example.com"]):
        r = request("GET", "/openapi.json", headers=origin)
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
        pre = request("OPTIONS", "/items", headers={**origin, "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 200 and "POST" in pre.headers["access-control-allow-methods"]
        assert "x-api-key" in pre.headers["access-control-allow-headers"]
        other = request("GET", "/openapi.json", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        plain = request("GET", "/openapi.json")
        assert "access-control-allow-origin" not in plain.headers and plain.headers["vary"] == "origin"


def test_slow_route_answers_504_and_does_not_block_others(pxt_tables, serve, new_id):
    import time

    from django.test import override_settings

    client = serve(
        """
[[service]]
name = "slow"
[[service.routes]]
type = "query"
path = "/slow"
query = "tests.pxt_app.slow_queries.slow_name"
one_row = true
[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"
"""
    )
    key = new_id()
    client.post("/items", json.dumps({"id": key, "name": "z"}), content_type="application/json")
    with override_settings(PXTSERVE={"REQUEST_TIMEOUT": 0.5}):
        started = time.monotonic()
        r = client.post("/slow", json.dumps({"id": key, "seconds": 3}), content_type="application/json")
        assert time.monotonic() - started < 2.5
    assert r.status_code == 504
    assert "did not finish within 0.5 s" in r.json()["detail"]["message"]
    fast = client.post("/slow", json.dumps({"id": key, "seconds": 0}), content_type="application/json")
    assert fast.json() == {"id": key, "name": "z"}


def test_api_requests_take_the_lean_path_and_the_admin_the_full_one(pxt_tables):
    """API requests skip the full middleware chain (no session cookie, no per-request thread hops);
    the admin keeps it (CSRF cookie, login redirect)."""
    urls = urlconf_for(SERVICE)
    from django.contrib import admin
    from django.urls import path

    urls.urlpatterns = [path("admin/", admin.site.urls), *urls.urlpatterns]
    with override_settings(ROOT_URLCONF=urls):
        api = request("GET", "/openapi.json")
        assert api.status_code == 200
        # XFrameOptionsMiddleware (full chain only) did not run; the API's own headers did
        assert "x-frame-options" not in api.headers
        assert api.headers["x-content-type-options"] == "nosniff"
        page = request("GET", "/admin/login/")
        assert page.status_code == 200 and "csrftoken" in page.headers.get("set-cookie", "")
        assert page.headers["x-frame-options"] == "DENY"
