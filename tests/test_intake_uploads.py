"""Uploads over a real server: stored under the type their bytes are (never the client's file name), each
file bounded by MAX_UPLOAD_SIZE as it arrives (413 before the rest is sent), large ones byte-exact."""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import httpx
import PIL.Image
import pytest

from tests.intake_server import KEY, MAX_UPLOAD_SIZE, closed_by_server, intake_server, open_request, read_response
from tests.test_uploads import mp4, pdf, wav

__all__ = ["intake_server"]
# media of the service is behind its auth
AUTH = {"X-API-Key": KEY}


def png_with_script() -> bytes:
    """A valid PNG whose tEXt chunk holds a script: HTML if it were ever served as HTML."""
    buf = io.BytesIO()
    PIL.Image.new("RGB", (12, 12), "red").save(buf, "PNG")
    data = buf.getvalue()
    text = b"Comment\0<html><script>document.title='pwned'</script></html>"
    chunk = len(text).to_bytes(4, "big") + b"tEXt" + text + zlib.crc32(b"tEXt" + text).to_bytes(4, "big")
    return data[:33] + chunk + data[33:]  # after the IHDR chunk


def palette_png() -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", (20, 20), "green").convert("P").save(buf, "PNG")
    return buf.getvalue()


def stored_extension(url: str) -> str:
    return os.path.splitext(url.split("?")[0])[1]


@pytest.mark.parametrize(
    ("field", "name", "content", "extension", "served_as"),
    [
        ("image", "p.html", png_with_script, ".png", "image/png"),
        ("image", "p.svg", png_with_script, ".png", "image/png"),
        # a palette-mode PNG named as a JPEG: once a 500 (PIL cannot save mode P as JPEG)
        ("image", "photo.jpg", palette_png, ".png", "image/png"),
        ("video", "v.html", "mp4", ".mp4", "video/mp4"),
        ("audio", "a.xhtml", wav, ".wav", "audio/"),
        ("document", "d.js", pdf, ".pdf", "application/pdf"),
        ("document", "page.html", lambda: b"<html><body><script>alert(1)</script></body></html>", ".txt", "text/plain"),
    ],
)
def test_an_upload_is_stored_under_the_type_it_is(
    intake_server, new_id, tmp_path, field, name, content, extension, served_as
):
    data = mp4(tmp_path) if content == "mp4" else content()
    r = httpx.post(f"{intake_server.url}/open/media", data={"id": str(new_id())}, files={field: (name, data)})
    assert r.status_code == 200, r.text
    url = r.json()[field]
    assert stored_extension(url) == extension, url
    media = httpx.get(url, headers=AUTH)
    assert media.status_code == 200 and media.headers["content-type"].startswith(served_as), media.headers


def test_bytes_of_no_known_type_are_stored_without_a_runnable_extension(tmp_path):
    from pxtserve.upload_types import detected_extension

    path = tmp_path / "upload"
    path.write_bytes(b"\x00\x01\x02 <script>alert(1)</script> \xff\xfe")
    assert detected_extension(path, "x.html") == ".bin"
    path.write_bytes(b"# Title\n\nsome *markdown*\n")
    assert detected_extension(path, "notes.md") == ".md"
    assert detected_extension(path, "notes.html") == ".txt"


def multipart_head(port: int, path: str, boundary: str, length: int) -> str:
    return (
        f"POST {path} HTTP/1.1\nHost: 127.0.0.1:{port}\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\nContent-Length: {length}\n"
    )


def part_header(boundary: str, field: str, filename: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def test_an_upload_over_the_limit_is_413_before_the_rest_is_sent(intake_server):
    boundary = "limitb0undary"
    announced = 50 * MAX_UPLOAD_SIZE
    sock = open_request(intake_server.port, multipart_head(intake_server.port, "/open/media", boundary, announced))
    sent = 0
    with sock:
        sock.sendall(part_header(boundary, "image", "big.png"))
        chunk = b"\x00" * 65536
        try:
            # a little past the limit, then wait: the answer comes while 48 MB are still unsent
            while sent < MAX_UPLOAD_SIZE + 4 * len(chunk):
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = read_response(sock)
        assert r.status == 413, r
        detail = r.json()["detail"]
        assert detail["error_code"] == "UPLOAD_TOO_LARGE" and "'image'" in detail["message"], detail
        assert r.headers["connection"] == "close" and r.headers["x-content-type-options"] == "nosniff"
        assert closed_by_server(sock)
    assert sent < announced / 10
    # the partial file is gone from Django's upload directory
    assert list(intake_server.upload_temp_dir.iterdir()) == []


def test_a_large_upload_within_the_limit_arrives_byte_exact(intake_server, new_id, tmp_path):
    # the bytes of a PDF (a 'document'), padded to just under the limit: a temporary file, moved, not copied
    data = pdf()
    data += b"%" + os.urandom(MAX_UPLOAD_SIZE - len(data) - 1000)
    r = httpx.post(f"{intake_server.url}/open/media", data={"id": str(new_id())}, files={"document": ("d.pdf", data)})
    assert r.status_code == 200, r.text
    served = httpx.get(r.json()["document"], headers=AUTH)
    assert served.status_code == 200 and served.content == data
    assert list(intake_server.upload_temp_dir.iterdir()) == []


def test_fields_and_several_files_parse_while_streaming(intake_server, new_id, tmp_path: Path):
    key = new_id()
    files = {"image": ("i.png", palette_png()), "audio": ("a.wav", wav())}
    r = httpx.post(f"{intake_server.url}/open/media", data={"id": str(key)}, files=files)
    assert r.status_code == 200 and r.json()["id"] == key, r.text
    assert httpx.get(r.json()["audio"], headers=AUTH).content == wav()
