"""Multipart uploads of every media kind, typed form fields, file responses, limits and bad files."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import PIL.Image
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from tests.bodies import response_body

SERVICE = """
[[service]]
name = "u"
[[service.routes]]
type = "insert"
table = "pxtserve_test.media"
path = "/media-in"
uploadfile_inputs = ["image", "video", "audio", "document"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.resize"
path = "/resize"
inputs = ["width", "height"]
uploadfile_inputs = ["image"]
outputs = ["resized"]
return_fileresponse = true
"""


def png(size=(50, 40), color="green") -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 8000)
    return buf.getvalue()


def pdf() -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", (60, 80), "white").save(buf, "PDF")
    return buf.getvalue()


def mp4(tmp_path: Path) -> bytes:
    import av
    import numpy as np

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 20, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def fetch(client, url: str):
    r = client.get(url.removeprefix("http://testserver"))
    return r, response_body(r)


def test_every_media_kind_round_trips_with_typed_form_fields(serve, new_id, tmp_path):
    client = serve(SERVICE)
    key = new_id()
    files = {
        "image": SimpleUploadedFile("p.png", png(), "image/png"),
        "video": SimpleUploadedFile("v.mp4", mp4(tmp_path), "video/mp4"),
        "audio": SimpleUploadedFile("a.wav", wav(), "audio/wav"),
        "document": SimpleUploadedFile("d.pdf", pdf(), "application/pdf"),
    }
    form = {"id": str(key), "width": "7", "ratio": "0.5", "flag": "true", "note": "hi", "extra": '{"a": [1, 2]}'}
    r = client.post("/media-in", {**form, **files})
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["width"], body["ratio"], body["flag"], body["note"], body["extra"]) == (
        7,
        0.5,
        True,
        "hi",
        {"a": [1, 2]},
    )
    for name, ctype in [
        ("image", "image/png"),
        ("video", "video/mp4"),
        ("audio", "audio/"),
        ("document", "application/pdf"),
    ]:
        resp, content = fetch(client, body[name])
        assert resp.status_code == 200, name
        assert resp["Content-Type"].startswith(ctype), (name, resp["Content-Type"])
        assert len(content) > 0


def test_the_spec_resize_example(serve):
    client = serve(SERVICE)
    r = client.post(
        "/resize",
        {"image": SimpleUploadedFile("photo.jpg", png((100, 80)), "image/png"), "width": "64", "height": "48"},
    )
    assert r.status_code == 200, r.content
    assert r["Content-Type"].startswith("image/") and "filename=" in r["Content-Disposition"]
    assert PIL.Image.open(io.BytesIO(response_body(r))).size == (64, 48)


def test_bad_form_field_and_missing_file_name_the_field(serve):
    client = serve(SERVICE)
    r = client.post(
        "/resize", {"image": SimpleUploadedFile("p.png", png(), "image/png"), "width": "wide", "height": "4"}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["form", "width"]
    r = client.post("/resize", {"width": "4", "height": "4"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["file", "image"]


def test_corrupt_image_is_a_4xx_naming_the_field_and_leaves_no_file(serve):
    from pxtserve.media import media_roots

    client = serve(SERVICE)
    tmp_dir = media_roots()[1][1]
    before = set(tmp_dir.rglob("*"))
    r = client.post(
        "/resize",
        {"image": SimpleUploadedFile("p.png", b"definitely not a png", "image/png"), "width": "4", "height": "4"},
    )
    assert 400 <= r.status_code < 500
    assert "image" in r.json()["detail"]["message"] and "/tmp" not in r.json()["detail"]["message"]
    assert {p for p in set(tmp_dir.rglob("*")) - before if p.is_file()} == set()


def test_upload_size_limit_is_413(serve):
    client = serve(SERVICE)
    with override_settings(PXTSERVE={"MAX_UPLOAD_SIZE": 1000}):
        r = client.post(
            "/resize", {"image": SimpleUploadedFile("p.png", b"x" * 5000, "image/png"), "width": "4", "height": "4"}
        )
    assert r.status_code == 413
    assert "'image'" in r.json()["detail"]["message"] and "1000" in r.json()["detail"]["message"]


def test_media_view_head_range_and_caching(serve, new_id):
    client = serve(SERVICE)
    r = client.post("/media-in", {"id": str(new_id()), "image": SimpleUploadedFile("p.png", png(), "image/png")})
    url = r.json()["image"].removeprefix("http://testserver")
    full, content = fetch(client, r.json()["image"])
    size = len(content)
    etag = full["ETag"]
    assert full["Accept-Ranges"] == "bytes" and full["Last-Modified"] and etag
    head = client.head(url)
    assert head.status_code == 200 and head["Content-Length"] == str(size) and head.content == b""
    part = client.get(url, HTTP_RANGE="bytes=0-9")
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 0-9/{size}"
    assert response_body(part) == content[:10]
    tail = client.get(url, HTTP_RANGE="bytes=-5")
    assert response_body(tail) == content[-5:]
    assert client.get(url, HTTP_RANGE=f"bytes={size + 10}-").status_code == 416
    assert client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304


def test_upload_inputs_must_be_media_and_get_queries_cannot_take_them(pxt_tables):
    from pxtserve.config import ServiceConfigError
    from pxtserve.service import build_service

    from .conftest import service_from_toml

    bad = '[[service]]\nname = "b"\n[[service.routes]]\ntype = "insert"\ntable = "pxtserve_test.media"\npath = "/x"\nuploadfile_inputs = ["note"]\n'
    with pytest.raises(ServiceConfigError, match="uploadfile input column 'note' is not media-typed"):
        build_service(service_from_toml(bad))


def test_openapi_declares_multipart(serve):
    client = serve(SERVICE)
    body = client.get("/openapi.json").json()["paths"]["/resize"]["post"]["requestBody"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["image"]["format"] == "binary"
    assert set(schema["required"]) == {"image", "width", "height"}
    assert json.dumps(schema)
