"""Media and file responses over a real server: streamed from disk in chunks (the right bytes, whole and
ranged), a client that disconnects stops the reading, stalled clients hold no reader thread, and a Range
no file can satisfy is a 416 without a traceback."""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import PIL.Image
import pytest

from tests.media_server import sized_file, started, store_file

SERVICE = """
[[service]]
name = "stream"
[[service.routes]]
type = "insert"
table = "pxtserve_test.resize"
path = "/resize"
inputs = ["width", "height"]
uploadfile_inputs = ["image"]
outputs = ["resized"]
return_fileresponse = true
"""

BIG = 64 * 1024 * 1024
WAIT_S = 30
# what Django logs when it reads a whole streamed body into memory first
WHOLE_BODY_WARNING = "StreamingHttpResponse must consume synchronous iterators"


@pytest.fixture(scope="module")
def server(pxt_tables: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with started(tmp_path_factory, SERVICE) as srv:
        yield srv


@pytest.fixture(scope="module")
def big_file() -> tuple[Path, str]:
    path, rel = sized_file(".bin", BIG)
    yield path, rel
    path.unlink()


def _expected(path: Path, start: int, end: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start + 1)


def _wait_for(condition: Any, what: str, server: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {WAIT_S} s\n{server.log()[-3000:]}"
        time.sleep(0.05)


def _raw_get(server: Any, rel: str, rcvbuf: int = 16 * 1024) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET /media/{rel} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def test_whole_and_ranged_downloads_are_the_files_bytes(server):
    path, rel = sized_file(".bin", 3 * 1024 * 1024 + 17)
    size = path.stat().st_size
    url = f"{server.origin}/media/{rel}"
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200 and r.content == path.read_bytes()
    assert r.headers["content-length"] == str(size)
    assert r.headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert r.headers["x-content-type-options"] == "nosniff"
    for header, (start, end) in {
        "bytes=1000-1999": (1000, 1999),
        f"bytes={size - 10}-": (size - 10, size - 1),
        "bytes=-300000": (size - 300000, size - 1),
        f"bytes=5-{size + 1000}": (5, size - 1),
        "bytes=7-" + "9" * 5000: (7, size - 1),  # an end past any file: to the end
    }.items():
        r = httpx.get(url, headers={"Range": header}, timeout=30)
        assert r.status_code == 206, (header, r.status_code)
        assert r.headers["content-range"] == f"bytes {start}-{end}/{size}"
        assert r.content == _expected(path, start, end), header
    head = httpx.head(url, headers={"Range": "bytes=10-19"}, timeout=30)
    assert head.status_code == 206 and head.headers["content-length"] == "10" and head.content == b""
    assert WHOLE_BODY_WARNING not in server.log()
    path.unlink()


@pytest.mark.parametrize("header", ["bytes=" + "9" * 5000 + "-", "bytes=" + "1" * 5000 + "-" + "2" * 5000])
def test_a_range_beyond_any_file_is_416_without_a_traceback(server, header):
    path, rel = sized_file(".bin", 1000)
    r = httpx.get(f"{server.origin}/media/{rel}", headers={"Range": header}, timeout=30)
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */1000"
    assert "Traceback" not in server.log()
    path.unlink()


def test_a_file_route_streams_its_file(server):
    buf = io.BytesIO()
    PIL.Image.new("RGB", (64, 48), "blue").save(buf, "PNG")
    r = httpx.post(
        f"{server.origin}/resize",
        data={"width": "20", "height": "10"},
        files={"image": ("pic.png", buf.getvalue(), "image/png")},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/") and r.headers["content-disposition"].startswith("inline")
    assert r.headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert PIL.Image.open(io.BytesIO(r.content)).size == (20, 10)
    assert WHOLE_BODY_WARNING not in server.log()


def test_a_client_that_disconnects_stops_the_reading(server, big_file):
    path, rel = big_file
    before = server.chars_read()
    sock = _raw_get(server, rel)
    try:
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        _wait_for(lambda: str(path) in server.open_paths(), "the server opening the file", server)
    finally:
        sock.close()
    _wait_for(lambda: str(path) not in server.open_paths(), "the server closing the file", server)
    # what the server read of the file: no more than the socket buffers took before the client left
    assert server.chars_read() - before < BIG // 2


def test_stalled_clients_hold_no_reader_thread(server, big_file):
    path, rel = big_file
    stalled = [_raw_get(server, rel) for _ in range(8)]  # more than there are reader threads
    try:
        for sock in stalled:
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        small, small_rel = sized_file(".bin", 1024 * 1024)
        r = httpx.get(f"{server.origin}/media/{small_rel}", timeout=30)
        assert r.status_code == 200 and r.content == small.read_bytes()
        small.unlink()
    finally:
        for sock in stalled:
            sock.close()
    _wait_for(lambda: str(path) not in server.open_paths(), "the server closing the stalled downloads' file", server)


@pytest.mark.parametrize(
    ("suffix", "inline"),
    [(".png", True), (".mp4", True), (".wav", True), (".pdf", True), (".html", False), (".svg", False),
     (".xhtml", False), (".js", False), (".txt", False), (".bin", False)],
)  # fmt: skip
def test_only_image_video_audio_and_pdf_are_inline(server, suffix, inline):
    path, rel = store_file(suffix, b"<script>alert(1)</script>")
    r = httpx.get(f"{server.origin}/media/{rel}", timeout=30)
    assert r.status_code == 200
    disposition = r.headers["content-disposition"]
    assert disposition.startswith("inline" if inline else "attachment"), (suffix, disposition)
    assert r.headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert r.headers["x-content-type-options"] == "nosniff"
    path.unlink()
