"""Media inputs sent as JSON strings: local paths only inside MEDIA_INPUT_DIRS, URLs only when allowed
and never to non-public addresses."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import PIL.Image
import pytest
from django.test import override_settings

from pxtserve.errors import ApiError
from pxtserve.media_inputs import check_media_value

SERVICE = """
[[service]]
name = "mi"
[[service.routes]]
type = "insert"
table = "pxtserve_test.images"
path = "/images"
"""


def post(client, body):
    return client.post("/images", json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("value", ["/etc/passwd", "file:///etc/passwd", "/etc/../etc/hostname", "ftp://x/y.png"])
def test_server_files_outside_the_allowed_dirs_are_refused(serve, new_id, value):
    client = serve(SERVICE)
    r = post(client, {"id": new_id(), "image": value})
    assert r.status_code == 422
    assert r.json()["detail"]["error_code"] == "MEDIA_INPUT_REFUSED"
    assert "'image'" in r.json()["detail"]["message"]


def test_files_inside_an_allowed_dir_are_accepted(serve, new_id, tmp_path):
    client = serve(SERVICE)
    path = tmp_path / "ok.png"
    PIL.Image.new("RGB", (10, 10)).save(path)
    assert post(client, {"id": new_id(), "image": str(path)}).status_code == 200
    with override_settings(PXTSERVE={"MEDIA_INPUT_DIRS": [str(tmp_path / "elsewhere")]}):
        assert post(client, {"id": new_id(), "image": str(path)}).status_code == 422


def test_urls_are_refused_unless_enabled(serve, new_id):
    client = serve(SERVICE)
    r = post(client, {"id": new_id(), "image": "http://example.com/x.png"})
    assert r.status_code == 422 and "MEDIA_FETCH_URLS" in r.json()["detail"]["message"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.png",
        "http://localhost/x.png",
        "http://10.1.2.3/x.png",
        "http://192.168.0.1/x.png",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x.png",
        "http://[::ffff:127.0.0.1]/x.png",
        "http://0.0.0.0/x.png",
    ],
)
def test_non_public_addresses_are_never_fetched(url):
    with override_settings(PXTSERVE={"MEDIA_FETCH_URLS": True}), pytest.raises(ApiError) as info:
        check_media_value("image", url)
    assert info.value.status == 422 and "non-public" in info.value.message


def test_a_loopback_server_that_exists_is_still_not_contacted():
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with override_settings(PXTSERVE={"MEDIA_FETCH_URLS": True}), pytest.raises(ApiError):
            check_media_value("image", f"http://127.0.0.1:{server.server_port}/x.png")
    finally:
        server.shutdown()
    assert hits == []


def test_the_fetch_connects_to_the_checked_address_without_resolving_again():
    """DNS rebinding: the host is resolved once (and checked); the connection goes to that address.

    `media.invalid` never resolves (RFC 2606), so this fetch only works if nothing resolves it again.
    """
    import httpx

    from pxtserve.media_inputs import pinned_request

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers["Host"]))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"pinned")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://media.invalid:{server.server_port}/cat.png?size=2"
    try:
        with httpx.Client() as client:
            response = client.send(pinned_request(client, url, "127.0.0.1"))
    finally:
        server.shutdown()
    assert response.content == b"pinned"
    assert seen == [("/cat.png?size=2", f"media.invalid:{server.server_port}")]
    with httpx.Client() as client:
        tls = pinned_request(client, "https://user:pw@example.com/a.png", "2001:db8::1")
    assert str(tls.url) == "https://user:pw@[2001:db8::1]/a.png"
    assert tls.headers["Host"] == "example.com"
    assert tls.extensions["sni_hostname"] == "example.com"
