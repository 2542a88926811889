"""The API's HTTP surface over a real server process: allowed hosts, Django's security settings, absolute
URLs behind a proxy, and JSON for every client error Django would otherwise answer itself."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator

import httpx
import PIL.Image
import pytest

from tests.processes import REPO, free_port, serve_env, wait_until_up

SERVICE = """
[[service]]
name = "surface"
modules = ["tests.pxt_app.schema"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"
inputs = ["id", "name"]
outputs = ["id", "name", "name_upper"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.images"
path = "/images"
uploadfile_inputs = ["image"]
outputs = ["id", "thumb"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items/bg"
inputs = ["id", "name"]
outputs = ["id"]
background = true
"""

# the site's settings with what a deployment behind a TLS-terminating proxy sets
SETTINGS = """
from project.settings import *

ALLOWED_HOSTS = ["127.0.0.1", "localhost", "api.example.com"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = True
SECURE_SSL_REDIRECT = True
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = 3600
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_REFERRER_POLICY = "no-referrer"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin-allow-popups"
DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
PXTSERVE = {**PXTSERVE, "MAX_REQUEST_BODY": 200_000}
"""

# a request the proxy forwarded from https://api.example.com
VIA_PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com"}


@pytest.fixture(scope="module")
def server(pxt_tables, tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("surface")
    (tmp / "surface_settings.py").write_text(SETTINGS)
    (tmp / "surface.toml").write_text(SERVICE)
    port = free_port()
    env = serve_env(
        tmp,
        PYTHONPATH=f"{tmp}:{REPO}",
        DJANGO_SETTINGS_MODULE="surface_settings",
        PXTSERVE_CORS_ALLOWED_ORIGINS="https://app.example.com",
    )
    log_path = tmp / "serve.log"
    command = [sys.executable, "manage.py", "serve", "surface", "--config", str(tmp / "surface.toml")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-workers"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process, output=lambda: log_path.read_text())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=60)


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    detail = response.json()["detail"]
    assert detail["error_code"] == code, detail
    return str(detail["message"])


def png() -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", (16, 12), "blue").save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/items"),
        ("GET", "/healthz"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/nope"),
        # Django's full handler: the admin and static files
        ("GET", "/admin/login/"),
        ("GET", "/static/ninja/swagger-ui-bundle.js"),
    ],
)
def test_a_host_not_allowed_is_a_json_400_on_every_api_path(server, method, path):
    r = httpx.request(method, server + path, headers={"Host": "rebound.example"}, json={"id": 1, "name": "x"})
    assert "rebound.example" in error(r, 400, "DISALLOWED_HOST")


def test_plain_http_is_redirected_to_https(server):
    r = httpx.post(f"{server}/items?x=1", json={"id": 1, "name": "x"})
    assert r.status_code == 301 and r.headers["location"] == f"https://{server.removeprefix('http://')}/items?x=1"


def test_the_security_settings_apply_to_api_responses(server, new_id):
    r = httpx.post(f"{server}/items", json={"id": new_id(), "name": "secure"}, headers=VIA_PROXY)
    assert r.status_code == 200, r.text
    assert r.headers["strict-transport-security"] == "max-age=3600; includeSubDomains"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cross-origin-opener-policy"] == "same-origin-allow-popups"


def test_media_and_job_urls_are_the_ones_the_client_sees_behind_the_proxy(server, new_id):
    r = httpx.post(f"{server}/images", data={"id": str(new_id())}, files={"image": ("p.png", png())}, headers=VIA_PROXY)
    assert r.status_code == 200, r.text
    thumb = r.json()["thumb"]
    assert thumb.startswith("https://api.example.com/media/"), thumb
    served = httpx.get(server + thumb.removeprefix("https://api.example.com"), headers=VIA_PROXY)
    assert served.status_code == 200 and served.headers["content-type"].startswith("image/")
    r = httpx.post(f"{server}/items/bg", json={"id": new_id(), "name": "job"}, headers=VIA_PROXY)
    assert r.status_code == 202, r.text
    assert r.json()["job_url"].startswith("https://api.example.com/jobs/"), r.json()


def test_unknown_paths_and_wrong_methods_are_json(server):
    assert "/nope" in error(httpx.get(f"{server}/nope", headers=VIA_PROXY), 404, "NOT_FOUND")
    r = httpx.get(f"{server}/items", headers=VIA_PROXY)
    assert "allowed: POST" in error(r, 405, "METHOD_NOT_ALLOWED") and r.headers["allow"] == "POST"


def test_bodies_django_cannot_read_are_json_client_errors(server, new_id):
    # multipart without a boundary, on an upload route
    r = httpx.post(f"{server}/images", content=b"--x\r\n", headers={**VIA_PROXY, "Content-Type": "multipart/form-data"})
    assert "boundary" in error(r, 400, "BAD_MULTIPART").lower()
    # form fields beyond DATA_UPLOAD_MAX_MEMORY_SIZE in a multipart body
    r = httpx.post(
        f"{server}/images", data={"id": "1", "tag": "t" * 20_000}, files={"image": ("p.png", png())}, headers=VIA_PROXY
    )
    assert "too large" in error(r, 413, "REQUEST_TOO_LARGE")
    # bytes that are not UTF-8
    r = httpx.post(
        f"{server}/items",
        content=b'{"id": 1, "name": "\xff\xfe"}',
        headers={**VIA_PROXY, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json"), r.text


def test_a_json_body_beyond_django_s_memory_limit_but_within_max_request_body_is_accepted(server, new_id):
    key = new_id()
    name = "n" * 50_000  # 5x DATA_UPLOAD_MAX_MEMORY_SIZE, a quarter of MAX_REQUEST_BODY
    r = httpx.post(f"{server}/items", json={"id": key, "name": name}, headers=VIA_PROXY)
    assert r.status_code == 200, r.text
    assert r.json()["name_upper"] == name.upper()
    # beyond MAX_REQUEST_BODY it is the documented 413
    r = httpx.post(f"{server}/items", json={"id": new_id(), "name": "n" * 300_000}, headers=VIA_PROXY)
    error(r, 413, "REQUEST_TOO_LARGE")


def test_cors_follows_pxtserve_cors_allowed_origins_through_django_cors_headers(server):
    allowed = {**VIA_PROXY, "Origin": "https://app.example.com"}
    pre = httpx.options(f"{server}/items", headers={**allowed, "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 200, pre.text
    assert pre.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-api-key" in pre.headers["access-control-allow-headers"]
    r = httpx.get(f"{server}/openapi.json", headers=allowed)
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-request-id" in r.headers["access-control-expose-headers"]
    other = httpx.get(f"{server}/openapi.json", headers={**VIA_PROXY, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_the_docs_page_may_not_be_framed_and_is_public_without_docs_auth(server):
    docs = httpx.get(f"{server}/docs", headers=VIA_PROXY)
    assert docs.status_code == 200 and docs.headers["x-frame-options"] == "DENY"
    assert httpx.get(f"{server}/openapi.json", headers=VIA_PROXY).status_code == 200
