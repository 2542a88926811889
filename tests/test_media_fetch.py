"""Media fetched from URLs (MEDIA_FETCH_URLS), end to end: a real server process fetches from a local HTTP
server on loopback (admitted by the test-only MEDIA_FETCH_ALLOW_LOOPBACK), follows redirects only to
addresses it may contact, and refuses bodies too large or too slow."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import PIL.Image
import pytest

from tests.processes import serving_site

SERVICE = """
[[service]]
name = "fetch"
modules = ["tests.pxt_app.schema"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.images"
path = "/images"
inputs = ["id", "image"]
outputs = ["id", "thumb"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.media"
path = "/everything"
inputs = ["id", "document"]
uploadfile_inputs = ["image"]
outputs = ["id"]
"""

LIMIT = 200_000
SETTINGS = f"""
from project.settings import *

PXTSERVE = {{
    **PXTSERVE,
    "MEDIA_FETCH_URLS": True,
    "MEDIA_FETCH_ALLOW_LOOPBACK": True,
    "MEDIA_FETCH_TIMEOUT": 2.0,
    "MAX_UPLOAD_SIZE": {LIMIT},
}}
"""


def png(size: tuple[int, int] = (16, 12)) -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", size, "green").save(buf, "PNG")
    return buf.getvalue()


class Origin(BaseHTTPRequestHandler):
    """The media server on loopback; `hits` records every path it was asked for."""

    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Origin.hits.append(self.path)
        if self.path in ("/cat.png", "/noext"):
            self._send(png(), "image/png")
        elif self.path == "/to-cat":
            self._redirect("/cat.png")
        elif self.path == "/to-private":
            self._redirect("http://10.255.255.1/x.png")
        elif self.path == "/to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data")
        elif self.path == "/loop":
            self._redirect("/loop")
        elif self.path == "/big":
            self._send(b"\0" * (LIMIT + 1), "image/png")
        elif self.path == "/big-unannounced":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            for _ in range(LIMIT // 10_000 + 2):
                self.wfile.write(b"\0" * 10_000)
        elif self.path == "/slow":
            # a byte now and then: every read is within httpx's timeout, the whole fetch is not
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            for byte in png():
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)
        else:
            self.send_response(404)
            self.end_headers()

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server(pxt_tables, tmp_path_factory) -> Iterator[str]:
    with serving_site(tmp_path_factory.mktemp("fetch"), SERVICE, SETTINGS) as (url, log):
        yield url
    assert "Traceback" not in log.read_text()


@pytest.fixture
def hits() -> Iterator[list[str]]:
    Origin.hits.clear()
    yield Origin.hits


def insert(server: str, new_id: int, image: str) -> httpx.Response:
    return httpx.post(server + "/images", json={"id": new_id, "image": image}, timeout=30)


def detail(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()["detail"]
    assert body["error_code"] == code, body
    return body["message"]


@pytest.mark.parametrize("path", ["/cat.png", "/noext", "/to-cat"])
def test_a_fetched_image_is_stored_and_its_computed_column_served(server, origin, hits, new_id, path):
    r = insert(server, new_id(), origin + path)
    assert r.status_code == 200, r.text
    thumb = httpx.get(r.json()["thumb"], timeout=10)
    assert thumb.status_code == 200
    assert PIL.Image.open(io.BytesIO(thumb.content)).size == (8, 8)


@pytest.mark.parametrize("path", ["/to-private", "/to-metadata"])
def test_a_redirect_to_a_non_public_address_is_refused(server, origin, hits, new_id, path):
    message = detail(insert(server, new_id(), origin + path), 422, "MEDIA_INPUT_REFUSED")
    assert "non-public" in message
    assert hits == [path]  # the redirect's target was never contacted (it would hang: 10.255.255.1)


def test_a_redirect_loop_is_cut_short(server, origin, hits, new_id):
    assert "redirects" in detail(insert(server, new_id(), origin + "/loop"), 422, "MEDIA_INPUT_UNREACHABLE")
    assert len(hits) == 6


@pytest.mark.parametrize("path", ["/big", "/big-unannounced"])
def test_a_body_beyond_the_upload_limit_is_413(server, origin, hits, new_id, path):
    assert str(LIMIT) in detail(insert(server, new_id(), origin + path), 413, "MEDIA_INPUT_TOO_LARGE")


def test_a_fetch_slower_than_the_timeout_is_refused(server, origin, hits, new_id):
    message = detail(insert(server, new_id(), origin + "/slow"), 422, "MEDIA_INPUT_UNREACHABLE")
    assert "2.0 s" in message


def test_a_missing_file_is_422_naming_the_status(server, origin, hits, new_id):
    assert "404" in detail(insert(server, new_id(), origin + "/nope.png"), 422, "MEDIA_INPUT_UNREACHABLE")


def test_private_addresses_stay_refused_with_loopback_admitted(server, new_id):
    for url in ("http://10.1.2.3/x.png", "http://[64:ff9b::a00:1]/x.png", "http://[2002:a00:1::1]/x.png"):
        assert "non-public" in detail(insert(server, new_id(), url), 422, "MEDIA_INPUT_REFUSED")


def test_a_refusal_suggests_an_upload_only_on_a_route_that_takes_one(server, new_id):
    message = detail(insert(server, new_id(), "/etc/passwd"), 422, "MEDIA_INPUT_REFUSED")
    assert "upload" not in message
    r = httpx.post(
        server + "/everything",
        data={"id": str(new_id()), "document": "/etc/passwd"},
        files={"image": ("a.png", png(), "image/png")},
        timeout=30,
    )
    assert "multipart uploads (image)" in detail(r, 422, "MEDIA_INPUT_REFUSED")
