"""Media outputs as absolute URLs, the media view, and file responses."""

import json
import os
from pathlib import Path

import PIL.Image
import pytest

from tests.bodies import response_body

SERVICE = """
[[service]]
name = "t"
prefix = "/api"
[[service.routes]]
type = "insert"
table = "pxtserve_test.images"
path = "/images"

[[service.routes]]
type = "query"
path = "/images/search"
query = "tests.pxt_app.queries.images_by_tag"

[[service.routes]]
type = "query"
path = "/images/thumb"
query = "tests.pxt_app.queries.image_thumb"
return_fileresponse = true

[[service.routes]]
type = "insert"
table = "pxtserve_test.images"
path = "/images/thumb-file"
outputs = ["thumb"]
return_fileresponse = true
"""


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


@pytest.fixture
def image_file(tmp_path: Path) -> str:
    path = tmp_path / "red.png"
    PIL.Image.new("RGB", (40, 30), "red").save(path)
    return str(path)


def fetch(client, url: str) -> tuple[int, str, bytes]:
    assert url.startswith("http://testserver/api/media/"), url
    r = client.get(url.removeprefix("http://testserver"))
    return r.status_code, r.headers.get("Content-Type", ""), response_body(r)


def test_media_outputs_are_absolute_urls_that_serve_the_file(serve, new_id, image_file):
    client = serve(SERVICE)
    key = new_id()
    r = post(client, "/api/images", {"id": key, "image": image_file, "tag": "m"})
    assert r.status_code == 200, r.content
    status, ctype, body = fetch(client, r.json()["thumb"])
    assert status == 200 and ctype.startswith("image/")
    from io import BytesIO

    assert PIL.Image.open(BytesIO(body)).size == (8, 8)


def test_query_media_urls(serve, new_id, image_file):
    client = serve(SERVICE)
    tag = f"q{new_id()}"
    key = new_id()
    post(client, "/api/images", {"id": key, "image": image_file, "tag": tag})
    rows = post(client, "/api/images/search", {"tag": tag}).json()["rows"]
    assert [r["id"] for r in rows] == [key]
    assert fetch(client, rows[0]["thumb"])[0] == 200


def test_file_responses(serve, new_id, image_file):
    client = serve(SERVICE)
    key = new_id()
    r = post(client, "/api/images/thumb-file", {"id": key, "image": image_file})
    assert r.status_code == 200 and r["Content-Type"].startswith("image/")
    assert PIL.Image.open(__import__("io").BytesIO(response_body(r))).size == (8, 8)
    r = post(client, "/api/images/thumb", {"id": key})
    assert r.status_code == 200 and r["Content-Type"].startswith("image/")
    assert post(client, "/api/images/thumb", {"id": new_id()}).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "../etc/passwd",
        "media/../../../etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "media/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "pgdata/postgresql.conf",
        "media",
        "media/does-not-exist.png",
    ],
)
def test_media_view_refuses_paths_outside_the_store(serve, path):
    client = serve(SERVICE)
    assert client.get(f"/api/media/{path}").status_code == 404


def test_media_view_refuses_symlinks_out_of_the_store(serve, tmp_path):
    from pxtserve.media import media_roots

    client = serve(SERVICE)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    _, roots = media_roots()
    link = roots[0] / "escape-link.txt"
    if link.is_symlink():
        link.unlink()
    os.symlink(secret, link)
    try:
        assert client.get("/api/media/media/escape-link.txt").status_code == 404
    finally:
        link.unlink()
