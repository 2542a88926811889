"""Decisions from the request head, over a real server: auth before the body (raw sockets), JSON-only
Content-Types on JSON routes (415), the security headers of the ASGI layer's 413, and the docs (DOCS_AUTH)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.intake_server import KEY, closed_by_server, intake_server, open_request, read_response

__all__ = ["intake_server"]

BIG = 100 * 1024 * 1024


def head(path: str, port: int, *lines: str, length: int = BIG, ctype: str = "application/json") -> str:
    extra = "".join(f"{line}\n" for line in lines)
    return f"POST {path} HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Type: {ctype}\nContent-Length: {length}\n{extra}"


@pytest.mark.parametrize(
    ("path", "ctype", "credentials", "status"),
    [
        # the service's auth, on a JSON route and on an upload route
        ("/items", "application/json", (), 401),
        ("/items", "application/json", ("X-API-Key: wrong",), 403),
        ("/images", "multipart/form-data; boundary=b0undary", (), 401),
        ("/images", "multipart/form-data; boundary=b0undary", ("Authorization: Bearer wrong",), 403),
    ],
)
def test_a_refused_key_is_answered_before_any_of_the_body(intake_server, path, ctype, credentials, status):
    # the body is announced (100 MB) and never sent: the answer can only come from the headers
    sock = open_request(intake_server.port, head(path, intake_server.port, *credentials, ctype=ctype))
    with sock:
        r = read_response(sock)
        assert r.status == status, r
        assert r.headers["connection"] == "close"
        assert closed_by_server(sock)
    # the same body as a refusal after a complete request
    small = httpx.post(
        intake_server.url + path,
        content=b"{}",
        headers={"Content-Type": ctype, **dict(c.split(": ", 1) for c in credentials)},
    )
    assert small.status_code == status and r.json() == small.json(), (r, small.text)
    assert r.headers["x-content-type-options"] == "nosniff" and "x-request-id" in r.headers
    assert list(intake_server.upload_temp_dir.iterdir()) == []


def test_the_body_of_a_refused_request_is_not_received(intake_server):
    # sent in part: the server answers and closes; nothing was spooled where Django's uploads go
    sock = open_request(
        intake_server.port, head("/images", intake_server.port, ctype="multipart/form-data; boundary=x")
    )
    with sock:
        sock.sendall(b"--x\r\n" + b"0" * 60_000)  # within the socket buffers: sent before the answer
        assert read_response(sock).status == 401
        assert closed_by_server(sock)
    assert list(intake_server.upload_temp_dir.iterdir()) == []


def test_a_right_key_still_reads_the_body(intake_server, new_id):
    key = new_id()
    r = httpx.post(f"{intake_server.url}/items", json={"id": key, "name": "keyed"}, headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.json() == {"id": key, "name": "keyed"}, r.text


@pytest.mark.parametrize(
    "ctype",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=zz", None, "application/jsonx"],
)
def test_a_json_route_refuses_other_content_types_with_415(intake_server, new_id, ctype):
    headers = {"X-API-Key": KEY} | ({"Content-Type": ctype} if ctype else {})
    body = b'{"id": %d, "name": "csrf"}' % new_id()
    r = httpx.post(f"{intake_server.url}/items", content=body, headers=headers)
    assert r.status_code == 415, r.text
    detail = r.json()["detail"]
    assert detail["error_code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert (ctype or "no Content-Type") in detail["message"] and "application/json" in detail["message"]
    assert r.headers["x-content-type-options"] == "nosniff" and "x-request-id" in r.headers
    # nothing was inserted
    lookup = httpx.get(f"{intake_server.url}/open/lookup", params={"id": int(body.split()[1][:-1])})
    assert lookup.status_code == 404, lookup.text


@pytest.mark.parametrize(
    "ctype", ["application/json", "application/json; charset=utf-8", "application/merge-patch+json", "text/x+json"]
)
def test_a_json_route_takes_json_content_types(intake_server, new_id, ctype):
    key = new_id()
    body = b'{"id": %d, "name": "typed"}' % key
    r = httpx.post(f"{intake_server.url}/open/items", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 200 and r.json() == {"id": key, "name": "typed"}, r.text


def test_the_mcp_endpoint_is_a_json_route(intake_server):
    rpc = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}'
    headers = {"X-API-Key": KEY, "Accept": "application/json, text/event-stream"}
    refused = httpx.post(f"{intake_server.url}/mcp", content=rpc, headers={**headers, "Content-Type": "text/plain"})
    assert refused.status_code == 415 and refused.json()["detail"]["error_code"] == "UNSUPPORTED_MEDIA_TYPE"
    listed = httpx.post(
        f"{intake_server.url}/mcp", content=rpc, headers={**headers, "Content-Type": "application/json"}
    )
    assert listed.status_code == 200 and "tools" in listed.json()["result"], listed.text


def test_upload_and_query_routes_keep_their_types(intake_server, new_id):
    from tests.test_http_surface import png

    key = new_id()
    r = httpx.post(f"{intake_server.url}/open/media", data={"id": str(key)}, files={"image": ("p.png", png())})
    assert r.status_code == 200, r.text
    r = httpx.get(f"{intake_server.url}/open/lookup", params={"id": key}, headers={"Content-Type": "text/plain"})
    assert r.status_code == 404 and r.json()["detail"]["error_code"] != "UNSUPPORTED_MEDIA_TYPE", r.text


def test_the_body_limit_413_carries_the_security_headers(intake_server):
    sock = open_request(intake_server.port, head("/open/items", intake_server.port, length=300_000_000))
    with sock:
        r = read_response(sock)
    assert r.status == 413 and r.json()["detail"]["error_code"] == "REQUEST_TOO_LARGE"
    ok = httpx.get(f"{intake_server.url}/healthz")
    for header in ("x-content-type-options", "referrer-policy", "cross-origin-opener-policy"):
        assert r.headers[header] == ok.headers[header], header
    assert "x-request-id" in r.headers


def test_docs_are_behind_the_service_auth_with_docs_auth_and_never_framed(intake_server):
    for path in ("/docs", "/openapi.json"):
        refused = httpx.get(intake_server.url + path)
        assert refused.status_code == 401 and refused.json() == {"detail": "Unauthorized"}, (path, refused.text)
        assert httpx.get(intake_server.url + path, headers={"X-API-Key": "wrong"}).status_code == 403
        allowed = httpx.get(intake_server.url + path, headers={"X-API-Key": KEY})
        assert allowed.status_code == 200, (path, allowed.text)
    docs = httpx.get(intake_server.url + "/docs", headers={"Authorization": f"Bearer {KEY}"})
    assert docs.headers["x-frame-options"] == "DENY" and "swagger" in docs.text.lower()


def test_a_site_s_own_django_handler_refuses_non_json_too(pxt_tables, new_id):
    # a third-party site mounting a PixeltableRouter serves it through Django's handlers, not pxtserve's ASGI one
    from pxtserve import PixeltableRouter
    from tests.conftest import mounted

    router = PixeltableRouter()
    router.add_insert_route(pxt_tables.items, path="/items", inputs=["id", "name"], outputs=["id", "name"])
    key = new_id()
    body = json.dumps({"id": key, "name": "site"})
    with mounted(router) as client:
        refused = client.post("/api/pxt/items", body, content_type="text/plain")
        assert refused.status_code == 415 and refused.json()["detail"]["error_code"] == "UNSUPPORTED_MEDIA_TYPE"
        accepted = client.post("/api/pxt/items", body, content_type="application/json")
        assert accepted.status_code == 200 and accepted.json() == {"id": key, "name": "site"}, accepted.content


def test_a_json_body_in_several_messages_is_read_whole(intake_server, new_id):
    # the handler wraps a body that comes in one ASGI message; one in several (a pause between the two halves,
    # and a body larger than a socket read) is spooled and read to its end, as Django reads it
    for name in ("in two parts", "x" * 300_000):
        key = new_id()
        body = json.dumps({"id": key, "name": name}).encode()
        sock = open_request(
            intake_server.port, head("/items", intake_server.port, f"X-API-Key: {KEY}", length=len(body))
        )
        with sock:
            sock.sendall(body[:10])
            time.sleep(0.2)  # not a timing check: the first part reaches the server alone
            sock.sendall(body[10:])
            r = read_response(sock)
        assert r.status == 200 and r.json() == {"id": key, "name": name}, r
