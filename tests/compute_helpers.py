"""What the compute-route tests share: the service they serve, a client of it (fixture compute_client), helpers.

The tables and views are in tests/pxt_app/compute_schema.py.
"""

from __future__ import annotations

import io
import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import PIL.Image
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from pxtserve.config import ServiceConfigError
from tests.bodies import response_body

from .conftest import service_from_toml, serving

REPO = Path(__file__).resolve().parent.parent
SCHEMA_MODULE = "tests.pxt_app.compute_schema"

SERVICE = f"""
[[service]]
name = "compute"
prefix = "/api"
modules = ["{SCHEMA_MODULE}"]

[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_items"
path = "/items"

[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_items"
path = "/items/short"
inputs = ["text"]
outputs = ["text_upper", "text_len"]

# the same table's insert route, to compare errors with
[[service.routes]]
type = "insert"
table = "pxtserve_test.compute_items"
path = "/items/insert"

[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_nonneg"
path = "/nonneg"

[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_words"
path = "/words"

[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_words"
path = "/words/short"
outputs = ["pos", "word_upper"]

[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_images"
path = "/images"
uploadfile_inputs = ["image"]

[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_images"
path = "/images/thumb"
inputs = ["side"]
uploadfile_inputs = ["image"]
outputs = ["thumb"]
return_fileresponse = true

[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_big_images"
path = "/big"
inputs = ["image", "side"]
outputs = ["side", "thumb", "gray"]

[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_big_images"
path = "/big/gray"
inputs = ["side"]
uploadfile_inputs = ["image"]
outputs = ["gray"]
return_fileresponse = true

[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_items"
path = "/bg/items"
background = true

[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_nonneg"
path = "/bg/nonneg"
background = true

[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_words"
path = "/bg/words"
background = true
"""


# --- helpers ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cs() -> types.ModuleType:
    from tests.pxt_app import compute_schema

    return compute_schema


@pytest.fixture(scope="module")
def compute_client(cs: types.ModuleType) -> Iterator[Client]:
    """A client of SERVICE, built once: compute routes store nothing, so the tests cannot disturb each other."""
    with serving(service_from_toml(SERVICE)) as c:
        yield c


def row_counts(cs: types.ModuleType) -> dict[str, int]:
    """The number of rows of every compute_* table and view."""
    return {name: t.count() for name, t in cs.ALL.items()}


def post(client: Client, path: str, body: Any) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


def png(size: tuple[int, int] = (20, 10), color: str = "red") -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def upload(size: tuple[int, int] = (20, 10)) -> SimpleUploadedFile:
    return SimpleUploadedFile("pic.png", png(size), "image/png")


def file_bytes(response: Any) -> bytes:
    return response_body(response)


def fetch_image(client: Client, url: str, prefix: str = "http://testserver/api/media/") -> PIL.Image.Image:
    """GET a media URL of a response; the image it serves."""
    assert url.startswith(prefix), url
    r = client.get(url.removeprefix("http://testserver"))
    assert r.status_code == 200, (url, r.status_code)
    assert r["Content-Type"].startswith("image/"), r["Content-Type"]
    image = PIL.Image.open(io.BytesIO(file_bytes(r)))
    image.load()
    return image


def error_detail(r: Any) -> dict[str, Any]:
    detail = r.json()["detail"]
    assert isinstance(detail, dict) and {"error_code", "message"} <= set(detail), detail
    return detail


def word_rows(doc_id: int, body: str, lang: str | None = None) -> list[dict[str, Any]]:
    """What compute_words answers by default for one compute_docs row."""
    return [
        {"doc_id": doc_id, "body": body, "lang": lang, "pos": i, "word": w, "word_upper": w.upper()}
        for i, w in enumerate(body.split())
    ]


def one_route(table: str, **fields: Any) -> str:
    """A service with a single compute route on `table` at /r."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
    return "\n".join(
        [
            "[[service]]",
            'name = "one"',
            f'modules = ["{SCHEMA_MODULE}"]',
            "[[service.routes]]",
            'type = "compute"',
            f'table = "{table}"',
            'path = "/r"',
            *lines,
        ]
    )


def registration_error(text: str) -> str:
    from pxtserve.service import build_service

    with pytest.raises(ServiceConfigError) as info:
        build_service(service_from_toml(text))
    return str(info.value)
