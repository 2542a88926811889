"""Compute routes declared: registration rules, auth, the command line, OpenAPI, the Python API and decorators."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pydantic
import pytest
from django.test import override_settings

# pytest fixtures, used as test arguments
from tests.compute_helpers import (
    REPO,
    SCHEMA_MODULE,
    error_detail,
    fetch_image,
    one_route,
    post,
    registration_error,
    row_counts,
    upload,
)

from .conftest import mounted, service_from_toml, serving

# --- registration ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "inputs", "named"),
    [
        ("pxtserve_test.compute_items", ["id", "text", "x", "text_upper"], "text_upper"),
        # a view's own computed column, and a base-table computed column seen through the view
        ("pxtserve_test.compute_nonneg", ["id", "text", "x", "x_squared"], "x_squared"),
        ("pxtserve_test.compute_nonneg", ["id", "text", "x", "inverse"], "inverse"),
        # an iterator's output column is a view column, not an input of the base table
        ("pxtserve_test.compute_words", ["doc_id", "body", "word"], "word"),
    ],
    ids=["table-computed", "view-computed", "base-computed-via-view", "iterator-column"],
)
def test_a_column_that_is_not_a_base_input_cannot_be_an_input(cs, table, inputs, named):
    msg = registration_error(one_route(table, inputs=inputs))
    assert "route #1 (/r): field 'inputs'" in msg, msg
    assert named_columns(msg, {named}) == {named}, msg


def named_columns(msg: str, candidates: set[str]) -> set[str]:
    """Which candidate column names the part of an error message after its location mentions as words."""
    text = msg.split("field 'inputs'", 1)[1].replace("pxtserve_test.compute_items", "")
    return {name for name in candidates if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", text)}


def test_inputs_must_cover_the_required_columns_the_outputs_read(cs):
    columns = {"id", "x", "tag"}
    # all outputs (the default) read id and x, both required
    msg = registration_error(one_route("pxtserve_test.compute_items", inputs=["text"]))
    assert "route #1 (/r): field 'inputs'" in msg, msg
    assert named_columns(msg, columns) == {"id", "x"}, msg
    # inverse reads x only
    msg = registration_error(one_route("pxtserve_test.compute_items", inputs=["text"], outputs=["inverse"]))
    assert "field 'inputs'" in msg and named_columns(msg, columns) == {"x"}, msg
    # outputs that read no missing required column make the same inputs valid
    with serving(
        service_from_toml(one_route("pxtserve_test.compute_items", inputs=["text"], outputs=["text", "text_len"]))
    ) as compute_client:
        assert post(compute_client, "/r", {"text": "four"}).json() == {"text": "four", "text_len": 4}
    # a view: what its filter reads counts too (text_upper reads only text, the filter x >= 0 reads x)
    msg = registration_error(one_route("pxtserve_test.compute_nonneg", inputs=["text"], outputs=["text_upper"]))
    assert "field 'inputs'" in msg and named_columns(msg, columns) == {"x"}, msg


def test_route_auth_protects_a_compute_route(cs):
    text = one_route("pxtserve_test.compute_items", inputs=["text"], outputs=["text_upper"], auth="api_key")
    with override_settings(PXTSERVE={"API_KEYS": ["k-compute"]}), serving(service_from_toml(text)) as compute_client:
        body = json.dumps({"text": "key"})
        assert compute_client.post("/r", body, content_type="application/json").status_code == 401
        r = compute_client.post("/r", body, content_type="application/json", HTTP_X_API_KEY="wrong")
        assert r.status_code == 403
        r = compute_client.post("/r", body, content_type="application/json", HTTP_AUTHORIZATION="Bearer k-compute")
        assert r.status_code == 200 and r.json() == {"text_upper": "KEY"}


# --- the command line -----------------------------------------------------------------------------------------------


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the tests assert on returncode
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_single_endpoint_mode_builds_a_compute_route(cs):
    result = manage(
        "serve", "compute", "--modules", SCHEMA_MODULE, "--table", "pxtserve_test.compute_big_images",
        "--path", "/gray", "--uploadfile-inputs", "image", "--outputs", "gray", "--return-fileresponse",
        "--dry-run", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [route] = json.loads(result.stdout)["routes"]
    assert (route["type"], route["method"], route["path"]) == ("compute", "POST", "/gray")
    # a view's inputs default to its base table's non-computed columns (the upload last, as for insert routes)
    assert route["inputs"] == ["side", "label", "image"] and route["uploadfile_inputs"] == ["image"]
    assert route["outputs"] == ["gray"] and route["return_fileresponse"] is True


# --- OpenAPI --------------------------------------------------------------------------------------------------------


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def request_schema(doc: dict[str, Any], path: str, content_type: str = "application/json") -> dict[str, Any]:
    return resolve(doc, doc["paths"][path]["post"]["requestBody"]["content"][content_type]["schema"])


def test_openapi_request_fields_are_the_inputs(compute_client):
    doc = compute_client.get("/api/openapi.json").json()
    items = request_schema(doc, "/api/items")
    assert set(items["properties"]) == {"id", "text", "x", "tag"}
    assert items["properties"]["x"]["type"] == "integer"
    assert set(request_schema(doc, "/api/items/short")["properties"]) == {"text"}
    # views: the base table's non-computed columns
    assert set(request_schema(doc, "/api/nonneg")["properties"]) == {"id", "text", "x", "tag"}
    assert set(request_schema(doc, "/api/words")["properties"]) == {"doc_id", "body", "lang"}
    # an iterator view answers a list
    ok = doc["paths"]["/api/words"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["type"] == "array"
    # uploads: multipart, with the other inputs as form fields
    form = request_schema(doc, "/api/images", "multipart/form-data")
    assert set(form["properties"]) == {"image", "side", "label"}
    assert form["properties"]["image"]["format"] == "binary"
    assert {"image", "side"} <= set(form["required"]) and "label" not in form["required"]
    assert set(request_schema(doc, "/api/big/gray", "multipart/form-data")["properties"]) == {"image", "side"}


# --- Python API and decorator routes --------------------------------------------------------------------------------


class Card(pydantic.BaseModel):
    label: str
    square: int


class Pic(pydantic.BaseModel):
    url: str
    width: int


class WordRow(pydantic.BaseModel):
    pos: int
    word: str


class Summary(pydantic.BaseModel):
    count: int
    words: list[str]


class TextRow(pydantic.BaseModel):
    text_upper: str
    text_len: int


def test_add_compute_route_in_python(cs):
    from pxtserve import PixeltableRouter

    router = PixeltableRouter()
    router.add_compute_route(cs.words, path="/words", inputs=["body"], outputs=["word"])
    router.add_compute_route(cs.nonneg, path="/square", inputs=["text", "x"], outputs=["x_squared"])
    before = row_counts(cs)
    with mounted(router) as compute_client:
        r = post(compute_client, "/api/pxt/words", {"body": "c b a"})
        assert r.status_code == 200, r.content
        assert r.json() == [{"word": "c"}, {"word": "b"}, {"word": "a"}]
        assert post(compute_client, "/api/pxt/square", {"text": "s", "x": 4}).json() == {"x_squared": 16}
        assert json.loads(post(compute_client, "/api/pxt/square", {"text": "s", "x": -4}).content) is None
    assert row_counts(cs) == before


def test_decorator_per_column_shapes_the_body_and_a_dropped_row_is_404(cs):
    from pxtserve import PixeltableRouter

    router = PixeltableRouter()
    calls: list[dict[str, Any]] = []

    @router.compute_route(cs.nonneg, path="/card", inputs=["text", "x"], outputs=["text_upper", "x_squared"])
    def card(*, text_upper: str, x_squared: int) -> Card:
        calls.append({"text_upper": text_upper, "x_squared": x_squared})
        return Card(label=f"{text_upper}!", square=x_squared)

    before = row_counts(cs)
    with mounted(router) as compute_client:
        r = post(compute_client, "/api/pxt/card", {"text": "ab", "x": 3})
        assert r.status_code == 200, r.content
        assert r.json() == {"label": "AB!", "square": 9}
        r = post(compute_client, "/api/pxt/card", {"text": "ab", "x": -3})
        assert r.status_code == 404, r.content
        error_detail(r)
    # the function ran for the computed row only
    assert calls == [{"text_upper": "AB", "x_squared": 9}]
    assert row_counts(cs) == before


def test_decorator_per_column_gets_media_as_urls_from_an_upload(cs):
    from pxtserve import PixeltableRouter

    router = PixeltableRouter()

    @router.compute_route(
        cs.images, path="/pic", inputs=["side"], uploadfile_inputs=["image"], outputs=["thumb", "width"]
    )
    def pic(*, thumb: str, width: int) -> Pic:
        return Pic(url=thumb, width=width)

    before = row_counts(cs)
    with mounted(router) as compute_client:
        r = compute_client.post("/api/pxt/pic", {"image": upload((24, 12)), "side": "3"})
        assert r.status_code == 200, r.content
        assert r.json()["width"] == 24
        assert fetch_image(compute_client, r.json()["url"], prefix="http://testserver/api/pxt/media/").size == (3, 3)
    assert row_counts(cs) == before


def test_decorator_batch_gets_every_iterator_row_or_none(cs):
    from pxtserve import PixeltableRouter

    router = PixeltableRouter()
    batches: list[list[WordRow]] = []

    @router.compute_route(cs.words, path="/summary", inputs=["body"], outputs=["pos", "word"])
    def summarize(rows: list[WordRow]) -> Summary:
        batches.append(rows)
        return Summary(count=len(rows), words=[r.word for r in rows])

    before = row_counts(cs)
    with mounted(router) as compute_client:
        r = post(compute_client, "/api/pxt/summary", {"body": "red green blue"})
        assert r.status_code == 200, r.content
        assert r.json() == {"count": 3, "words": ["red", "green", "blue"]}
        r = post(compute_client, "/api/pxt/summary", {"body": ""})
        assert r.status_code == 200, r.content
        assert r.json() == {"count": 0, "words": []}
    assert [[(row.pos, row.word) for row in batch] for batch in batches] == [
        [(0, "red"), (1, "green"), (2, "blue")],
        [],
    ]
    assert row_counts(cs) == before


def missing_output(*, text_upper: str) -> Card:
    return Card(label=text_upper, square=0)


def not_an_output(*, text_upper: str, text_len: int, tag: str | None) -> Card:
    return Card(label=text_upper, square=text_len)


def positional(text_upper: str, *, text_len: int) -> Card:
    return Card(label=text_upper, square=text_len)


def returns_dict(*, text_upper: str, text_len: int) -> dict:
    return {"label": text_upper, "square": text_len}


def batch_form(rows: list[TextRow]) -> Summary:
    return Summary(count=len(rows), words=[r.text_upper for r in rows])


@pytest.mark.parametrize(
    ("target", "fn", "says"),
    [
        ("items", missing_output, "missing_output"),
        ("items", not_an_output, "not_an_output"),
        ("items", positional, "positional"),
        ("items", returns_dict, "returns_dict"),
        # the batch form only where several rows can come back: an iterator view
        ("items", batch_form, "iterator"),
        ("nonneg", batch_form, "iterator"),
    ],
    ids=["missing-output", "not-an-output", "positional", "returns-dict", "batch-on-table", "batch-on-plain-view"],
)
def test_decorator_rules_are_checked_at_registration(cs, target, fn, says):
    from pxtserve import PixeltableRouter
    from pxtserve.errors import RouteDefinitionError

    router = PixeltableRouter()
    table = {"items": cs.items, "nonneg": cs.nonneg}[target]
    # both targets have text_upper and text_len (the view's filter reads x)
    decorate = router.compute_route(table, path="/x", inputs=["text", "x"], outputs=["text_upper", "text_len"])
    with pytest.raises(RouteDefinitionError) as info:
        decorate(fn)
    assert says in str(info.value), str(info.value)
    assert router.operations == []  # nothing half-registered
