"""Signed media URLs over a real server: a protected route's media URLs carry an expiry and an HMAC, work without
a key (as an `<img src>` fetches them), and are 403 when the signature is missing, wrong or expired; routers
whose routes are all public keep plain URLs."""

from __future__ import annotations

import io
import json
import time
import types
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import PIL.Image
import pytest
from django.test import Client, override_settings

from tests.media_server import started

SECRET = "media-signing-test-secret-key-0123456789abcdef"
KEY = "k-sign-7"

MIXED = """
[[service]]
name = "signed"
[[service.routes]]
type = "insert"
table = "pxtserve_test.images"
path = "/images"
uploadfile_inputs = ["image"]
outputs = ["id", "thumb"]
auth = "api_key"

[[service.routes]]
type = "query"
path = "/images/search"
query = "tests.pxt_app.queries.images_by_tag"
"""

PUBLIC = """
[[service]]
name = "plain"
[[service.routes]]
type = "query"
path = "/images/search"
query = "tests.pxt_app.queries.images_by_tag"
"""


@pytest.fixture(scope="module")
def server(pxt_tables: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with started(tmp_path_factory, MIXED, PXTSERVE_API_KEYS=KEY, DJANGO_SECRET_KEY=SECRET) as srv:
        yield srv


def _png() -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", (30, 20), "purple").save(buf, "PNG")
    return buf.getvalue()


def _insert(server: Any, key: int, tag: str) -> str:
    r = httpx.post(
        f"{server.origin}/images",
        data={"id": str(key), "tag": tag},
        files={"image": ("p.png", _png(), "image/png")},
        headers={"X-API-Key": KEY},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.json()["thumb"]


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = {**dict(urllib.parse.parse_qsl(parts.query)), **params}
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _refused(url: str, code: str) -> None:
    r = httpx.get(url, timeout=30)
    assert r.status_code == 403, (url, r.status_code)
    assert r.json()["detail"]["error_code"] == code, r.text
    assert "signature" in r.json()["detail"]["message"]


def test_a_protected_routes_media_url_is_the_capability(server, new_id):
    url = _insert(server, new_id(), "signed")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert set(query) == {"expires", "signature"}
    assert int(query["expires"]) > time.time() + 3000  # the default MEDIA_URL_TTL, 3,600 s
    r = httpx.get(url, timeout=30)  # no key, as an <img src> would fetch it
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/")
    assert PIL.Image.open(io.BytesIO(r.content)).size == (8, 8)


def test_missing_wrong_and_expired_signatures_are_403(server, new_id):
    url = _insert(server, new_id(), "tampered")
    bare, _, query = url.partition("?")
    params = dict(urllib.parse.parse_qsl(query))
    _refused(bare, "MEDIA_SIGNATURE_MISSING")
    _refused(_with_query(url, signature=params["signature"][:-1] + ("0" if params["signature"][-1] != "0" else "1")),
             "MEDIA_SIGNATURE_WRONG")  # fmt: skip
    _refused(_with_query(url, expires=str(int(params["expires"]) + 10**6)), "MEDIA_SIGNATURE_WRONG")
    # another file's path under this file's signature
    other = _insert(server, new_id(), "tampered").partition("?")[0]
    _refused(f"{other}?{query}", "MEDIA_SIGNATURE_WRONG")
    # a signature the server made an hour and more ago (same key, expiry in the past)
    from pxtserve.media_signing import signed_query

    rel = urllib.parse.unquote(urllib.parse.urlsplit(bare).path.removeprefix("/media/"))
    with override_settings(SECRET_KEY=SECRET):
        expired = signed_query(rel, now=time.time() - 2 * 3600)
    _refused(f"{bare}?{expired}", "MEDIA_SIGNATURE_EXPIRED")
    # the router's own key is not a way around it on a route-protected router: only the signature is
    assert httpx.get(bare, headers={"X-API-Key": KEY}, timeout=30).status_code == 403
    assert "Traceback" not in server.log()


def test_public_routes_of_a_protected_router_sign_too(server, new_id):
    tag = f"both{new_id()}"
    _insert(server, new_id(), tag)
    rows = httpx.post(f"{server.origin}/images/search", json={"tag": tag}, timeout=30).json()["rows"]
    url = rows[0]["thumb"]
    # the same file through a public route: signed as well, or stripping a protected URL would make it public
    assert "signature=" in url and httpx.get(url, timeout=30).status_code == 200
    _refused(url.partition("?")[0], "MEDIA_SIGNATURE_MISSING")


def test_a_public_router_keeps_plain_urls(serve, new_id, tmp_path):
    from tests.bodies import response_body
    from tests.pxt_app.schema import images

    image = tmp_path / "p.png"
    PIL.Image.new("RGB", (12, 12), "green").save(image)
    tag = f"plain{new_id()}"
    images.insert([{"id": new_id(), "image": str(image), "tag": tag}])
    client = serve(PUBLIC)
    r = client.post("/images/search", json.dumps({"tag": tag}), content_type="application/json")
    url = r.json()["rows"][0]["thumb"]
    assert "?" not in url
    r = client.get(url.removeprefix("http://testserver"))
    assert r.status_code == 200 and PIL.Image.open(io.BytesIO(response_body(r))).size == (8, 8)


PROTECTED_JOBS = """
[[service]]
name = "signed-jobs"
prefix = "/api"
[[service.routes]]
type = "query"
path = "/bg/thumbs"
query = "tests.pxt_app.queries.images_by_tag"
background = true
auth = "api_key"
"""


@pytest.fixture
def api_key_settings() -> Iterator[None]:
    """The key, for in-process services: entered before `serve`, so left after its URLconf override."""
    from django.conf import settings

    with override_settings(PXTSERVE={**settings.PXTSERVE, "API_KEYS": [KEY]}):
        yield


@pytest.mark.django_db(transaction=True)
def test_a_protected_background_routes_result_has_signed_urls(api_key_settings, serve, new_id, tmp_path):
    from tests.bodies import response_body
    from tests.pxt_app.schema import images

    image = tmp_path / "p.png"
    PIL.Image.new("RGB", (12, 12), "navy").save(image)
    tag = f"job{new_id()}"
    images.insert([{"id": new_id(), "image": str(image), "tag": tag}])
    client = serve(PROTECTED_JOBS)
    r = client.post("/api/bg/thumbs", json.dumps({"tag": tag}), content_type="application/json", HTTP_X_API_KEY=KEY)
    assert r.status_code == 202, r.content
    status = client.get(r.json()["job_url"].removeprefix("http://testserver"), HTTP_X_API_KEY=KEY).json()
    assert status["status"] == "done", status
    url = status["result"]["rows"][0]["thumb"].removeprefix("http://testserver")
    assert "signature=" in url
    r = client.get(url)  # no key
    assert r.status_code == 200 and PIL.Image.open(io.BytesIO(response_body(r))).size == (8, 8)
    assert client.get(url.partition("?")[0]).status_code == 403


def test_a_sites_ninja_api_auth_protects_its_routers_media(api_key_settings, pxt_tables, new_id, tmp_path):
    """A third-party site puts the auth on its NinjaAPI, not on the router: the router's media is protected all
    the same (signed URLs; the bare path takes the API's key or is 403)."""
    from django.urls import path
    from ninja import NinjaAPI

    from pxtserve import PixeltableRouter
    from pxtserve.auth import api_key_auth
    from tests.bodies import response_body
    from tests.pxt_app.queries import images_by_tag
    from tests.pxt_app.schema import images

    image = tmp_path / "p.png"
    PIL.Image.new("RGB", (12, 12), "teal").save(image)
    tag = f"site{new_id()}"
    images.insert([{"id": new_id(), "image": str(image), "tag": tag}])
    router = PixeltableRouter()
    router.add_query_route(path="/search", query=images_by_tag)
    api = NinjaAPI(auth=api_key_auth(lambda: [KEY]), urls_namespace=f"signing-site-{new_id()}")
    api.add_router("/pxt", router)
    urlconf = types.ModuleType(f"signing_site_urls_{new_id()}")
    urlconf.urlpatterns = [path("api/", api.urls)]  # type: ignore[attr-defined]
    with override_settings(ROOT_URLCONF=urlconf):
        client = Client()
        search = json.dumps({"tag": tag})
        assert client.post("/api/pxt/search", search, content_type="application/json").status_code == 401
        r = client.post("/api/pxt/search", search, content_type="application/json", HTTP_X_API_KEY=KEY)
        url = r.json()["rows"][0]["thumb"].removeprefix("http://testserver")
        assert "signature=" in url
        r = client.get(url)  # no key
        assert r.status_code == 200 and PIL.Image.open(io.BytesIO(response_body(r))).size == (8, 8)
        bare = url.partition("?")[0]
        r = client.get(bare)
        assert r.status_code == 403 and r.json()["detail"]["error_code"] == "MEDIA_SIGNATURE_MISSING"
        assert client.get(bare, HTTP_X_API_KEY=KEY).status_code == 200
        assert client.get(bare, HTTP_X_API_KEY="wrong").status_code == 403
