"""Compute routes at request time: `Table.compute()` on the request's row, answered and never stored.

Every test that sends requests checks that no table or view gained a row, failing requests included.
"""

from __future__ import annotations

import io
import json
from typing import Any

import PIL.Image
import pytest
import sqlalchemy as sa
from django.test import Client

# pytest fixtures, used as test arguments
from tests.compute_helpers import (
    SCHEMA_MODULE,
    error_detail,
    fetch_image,
    file_bytes,
    png,
    post,
    row_counts,
    upload,
    word_rows,
)

from .conftest import service_from_toml, serving

# --- tables -------------------------------------------------------------------------------------------------------


def test_table_route_answers_every_column_and_stores_nothing(compute_client, cs, new_id):
    before = row_counts(cs)
    key = new_id()
    r = post(compute_client, "/api/items", {"id": key, "text": "ada", "x": 4, "tag": "t"})
    assert r.status_code == 200, r.content
    assert r.json() == {
        "id": key,
        "text": "ada",
        "x": 4,
        "tag": "t",
        "text_upper": "ADA",
        "text_len": 3,
        "inverse": 0.25,
    }
    # a nullable input left out is null
    r = post(compute_client, "/api/items", {"id": key, "text": "bo", "x": 2})
    assert r.status_code == 200, r.content
    assert r.json()["tag"] is None and r.json()["inverse"] == 0.5
    assert row_counts(cs) == before


def test_declared_inputs_and_outputs_need_only_what_the_outputs_read(compute_client, cs):
    before = row_counts(cs)
    # neither the primary key nor x: text_upper and text_len read only text
    r = post(compute_client, "/api/items/short", {"text": "hey"})
    assert r.status_code == 200, r.content
    assert r.json() == {"text_upper": "HEY", "text_len": 3}
    # a column that is not an input of this route is refused, not silently dropped
    r = post(compute_client, "/api/items/short", {"text": "hey", "x": 1})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "x"
    r = post(compute_client, "/api/items/short", {})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "text"
    assert row_counts(cs) == before


def test_a_stored_primary_key_is_computed_afresh_and_the_stored_row_is_untouched(compute_client, cs, new_id):
    key = new_id()
    cs.items.insert([{"id": key, "text": "stored", "x": 1}])
    before = row_counts(cs)
    r = post(compute_client, "/api/items", {"id": key, "text": "fresh", "x": 5})
    assert r.status_code == 200, r.content
    assert (r.json()["text_upper"], r.json()["inverse"]) == ("FRESH", 0.2)
    t = cs.items
    assert t.where(t.id == key).select(t.text, t.x).collect()["text"] == ["stored"]
    assert row_counts(cs) == before


def test_a_raising_computed_column_is_the_same_client_error_as_on_insert(compute_client, cs, new_id):
    before = row_counts(cs)
    inserted = post(compute_client, "/api/items/insert", {"id": new_id(), "text": "zero", "x": 0})
    assert 400 <= inserted.status_code < 500, inserted.content
    for path in ("/api/items", "/api/nonneg"):
        r = post(compute_client, path, {"id": new_id(), "text": "zero", "x": 0})
        assert r.status_code == inserted.status_code, (path, r.content)
        detail = error_detail(r)
        assert detail["error_code"] == error_detail(inserted)["error_code"]
        # Pixeltable's message names the column's expression and what it raised
        assert "compute_inverse(x)" in detail["message"], detail
        assert "x must not be zero" in detail["message"], detail
        # ... and pxtserve says which column that is
        assert detail["message"].startswith("computed column 'inverse' failed: "), detail
    # outputs that do not read the raising column are unaffected
    assert post(compute_client, "/api/items/short", {"text": "fine"}).json() == {"text_upper": "FINE", "text_len": 4}
    assert row_counts(cs) == before


# --- views --------------------------------------------------------------------------------------------------------


def test_view_route_takes_a_base_row_and_answers_the_view_row(compute_client, cs, new_id):
    before = row_counts(cs)
    key = new_id()
    r = post(compute_client, "/api/nonneg", {"id": key, "text": "sq", "x": 3})
    assert r.status_code == 200, r.content
    # every column of the view: the base table's and its own
    assert r.json() == {
        "id": key,
        "text": "sq",
        "x": 3,
        "tag": None,
        "text_upper": "SQ",
        "text_len": 2,
        "inverse": pytest.approx(1 / 3),
        "x_squared": 9,
    }
    # a view column is not an input: the request carries a base-table row
    r = post(compute_client, "/api/nonneg", {"id": key, "text": "sq", "x": 3, "x_squared": 1})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "x_squared"
    assert row_counts(cs) == before


def test_view_filter_dropping_the_row_answers_null(compute_client, cs, new_id):
    before = row_counts(cs)
    r = post(compute_client, "/api/nonneg", {"id": new_id(), "text": "neg", "x": -4})
    assert r.status_code == 200, r.content
    assert r["Content-Type"].startswith("application/json")
    assert json.loads(r.content) is None
    assert row_counts(cs) == before


def test_iterator_view_answers_every_row_in_order(compute_client, cs):
    before = row_counts(cs)
    body = "the quick brown fox jumps"
    r = post(compute_client, "/api/words", {"doc_id": 7, "body": body, "lang": "en"})
    assert r.status_code == 200, r.content
    assert r.json() == word_rows(7, body, "en")
    r = post(compute_client, "/api/words/short", {"doc_id": 8, "body": "b a"})
    assert r.status_code == 200, r.content
    assert r.json() == [{"pos": 0, "word_upper": "B"}, {"pos": 1, "word_upper": "A"}]
    # one word: still a list
    assert post(compute_client, "/api/words", {"doc_id": 9, "body": "solo"}).json() == word_rows(9, "solo")
    assert row_counts(cs) == before


def test_iterator_view_without_rows_answers_an_empty_list(compute_client, cs):
    before = row_counts(cs)
    for body in ("", "   "):
        r = post(compute_client, "/api/words", {"doc_id": 1, "body": body})
        assert r.status_code == 200, r.content
        assert r.json() == []
    assert row_counts(cs) == before


# --- media --------------------------------------------------------------------------------------------------------


def test_computed_images_are_media_urls_that_stay_valid(compute_client, cs, tmp_path):
    before = row_counts(cs)
    source = tmp_path / "big.png"
    source.write_bytes(png((30, 20)))
    r = post(compute_client, "/api/big", {"image": str(source), "side": 6})
    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) == {"side", "thumb", "gray"} and body["side"] == 6
    # compute() holds computed images in memory: the server must have written them where /media serves from
    thumb = fetch_image(compute_client, body["thumb"])
    assert thumb.size == (6, 6)
    gray = fetch_image(compute_client, body["gray"])
    assert gray.size == (6, 6) and gray.mode == "L"
    # kept in pxtserve's store of response media, not in this process's Pixeltable tmp dir (cleared once it exits)
    assert "/api/media/pxtserve_media/" in body["thumb"] and "/api/media/pxtserve_media/" in body["gray"]
    # each request gets its own files
    again = post(compute_client, "/api/big", {"image": str(source), "side": 5}).json()
    assert again["thumb"] != body["thumb"] and fetch_image(compute_client, again["thumb"]).size == (5, 5)
    assert fetch_image(compute_client, body["thumb"]).size == (6, 6)
    # dropped by the view's filter
    r = post(compute_client, "/api/big", {"image": str(source), "side": 2})
    assert r.status_code == 200 and json.loads(r.content) is None
    assert row_counts(cs) == before


def test_upload_with_form_fields_answers_json_with_media_urls(compute_client, cs):
    before = row_counts(cs)
    r = compute_client.post("/api/images", {"image": upload((20, 10)), "side": "5", "label": "lbl"})
    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) == {"image", "side", "label", "thumb", "width"}
    assert (body["side"], body["label"], body["width"]) == (5, "lbl", 20)
    assert fetch_image(compute_client, body["thumb"]).size == (5, 5)
    assert fetch_image(compute_client, body["image"]).size == (20, 10)
    # a form field of the wrong type names the field
    r = compute_client.post("/api/images", {"image": upload(), "side": "wide"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "side"
    assert row_counts(cs) == before


def test_upload_with_file_response_answers_the_computed_image(compute_client, cs):
    before = row_counts(cs)
    r = compute_client.post("/api/images/thumb", {"image": upload((40, 30)), "side": "7"})
    assert r.status_code == 200, r.content
    assert r["Content-Type"].startswith("image/")
    image = PIL.Image.open(io.BytesIO(file_bytes(r)))
    assert image.size == (7, 7)
    assert row_counts(cs) == before


def test_file_response_is_404_when_the_view_filter_drops_the_row(compute_client, cs):
    before = row_counts(cs)
    r = compute_client.post("/api/big/gray", {"image": upload(), "side": "2"})
    assert r.status_code == 404, r.content
    assert r["Content-Type"].startswith("application/json")
    error_detail(r)
    r = compute_client.post("/api/big/gray", {"image": upload(), "side": "4"})
    assert r.status_code == 200, r.content
    image = PIL.Image.open(io.BytesIO(file_bytes(r)))
    assert image.size == (4, 4) and image.mode == "L"
    assert row_counts(cs) == before


# --- background -----------------------------------------------------------------------------------------------------


def submit(compute_client: Client, path: str, body: Any) -> dict[str, str]:
    r = post(compute_client, path, body)
    assert r.status_code == 202, r.content
    handle = r.json()
    assert set(handle) == {"id", "job_url"}
    assert handle["job_url"] == f"http://testserver/api/jobs/{handle['id']}"
    return handle


def poll(compute_client: Client, handle: dict[str, str]) -> Any:
    r = compute_client.get(handle["job_url"].removeprefix("http://testserver"))
    assert r.status_code == 200, r.content
    return r.json()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("route", "body", "shape"),
    [
        ("items", {"id": 1, "text": "ada", "x": 4}, dict),
        ("nonneg", {"id": 2, "text": "neg", "x": -1}, type(None)),
        ("words", {"doc_id": 3, "body": "one two three"}, list),
        ("words", {"doc_id": 4, "body": ""}, list),
    ],
    ids=["table", "filtered-null", "iterator", "iterator-empty"],
)
def test_background_result_is_the_sync_body(compute_client, cs, route, body, shape):
    before = row_counts(cs)
    status = poll(compute_client, submit(compute_client, f"/api/bg/{route}", body))
    sync = post(compute_client, f"/api/{route}", body)
    assert sync.status_code == 200, sync.content
    assert isinstance(sync.json(), shape)
    assert {k: status[k] for k in ("status", "result")} == {"status": "done", "result": sync.json()}
    if route == "words":
        assert status["result"] == word_rows(body["doc_id"], body["body"])
    assert row_counts(cs) == before


@pytest.mark.django_db(transaction=True)
def test_background_failure_ends_as_an_error_with_the_sync_message(compute_client, cs, new_id):
    before = row_counts(cs)
    body = {"id": new_id(), "text": "zero", "x": 0}
    sync = post(compute_client, "/api/items", body)
    assert 400 <= sync.status_code < 500
    status = poll(compute_client, submit(compute_client, "/api/bg/items", body))
    assert status["status"] == "error", status
    assert status["error"] == error_detail(sync)["message"]
    assert row_counts(cs) == before


# --- export_sql -----------------------------------------------------------------------------------------------------


def make_target(url: str, name: str, columns: dict[str, Any]) -> sa.Table:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    table = sa.Table(name, md, *(sa.Column(n, t) for n, t in columns.items()))
    md.drop_all(engine, [table])
    md.create_all(engine, [table])
    engine.dispose()
    return table


def target_rows(url: str, table: sa.Table, order_by: str) -> list[tuple]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c[order_by]))]
    engine.dispose()
    return rows


def export_service(url: str) -> str:
    return f"""
[[service]]
name = "export"
modules = ["{SCHEMA_MODULE}"]
[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_items"
path = "/items"
inputs = ["id", "text", "x"]
outputs = ["id", "text_upper", "inverse"]
[service.routes.export_sql]
db_connect = "{url}"
table = "cmp_items"
[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_nonneg"
path = "/nonneg"
inputs = ["text", "x"]
outputs = ["x", "x_squared"]
[service.routes.export_sql]
db_connect = "{url}"
table = "cmp_nonneg"
[[service.routes]]
type = "compute"
table = "pxtserve_test.compute_words"
path = "/words"
inputs = ["body"]
outputs = ["pos", "word", "word_upper"]
[service.routes.export_sql]
db_connect = "{url}"
table = "cmp_words"
"""


@pytest.fixture(params=["sqlite_url", "postgres_url"])
def target_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(request.param)


def test_export_sql_writes_each_computed_row_and_pixeltable_stays_empty(cs, target_url, new_id):
    items = make_target(target_url, "cmp_items", {"id": sa.Integer, "text_upper": sa.String(100), "inverse": sa.Float})
    nonneg = make_target(target_url, "cmp_nonneg", {"x": sa.Integer, "x_squared": sa.Integer})
    words = make_target(
        target_url, "cmp_words", {"pos": sa.Integer, "word": sa.String(100), "word_upper": sa.String(100)}
    )
    before = row_counts(cs)
    with serving(service_from_toml(export_service(target_url))) as compute_client:
        key = new_id()
        r = post(compute_client, "/items", {"id": key, "text": "ex", "x": 2})
        assert r.status_code == 200, r.content
        assert r.json() == {"id": key, "text_upper": "EX", "inverse": 0.5}
        # a failing computation exports nothing
        assert 400 <= post(compute_client, "/items", {"id": new_id(), "text": "no", "x": 0}).status_code < 500
        assert target_rows(target_url, items, "id") == [(key, "EX", 0.5)]

        # a row the view's filter drops: null, nothing exported
        r = post(compute_client, "/nonneg", {"text": "n", "x": -3})
        assert r.status_code == 200 and json.loads(r.content) is None
        assert target_rows(target_url, nonneg, "x") == []
        assert post(compute_client, "/nonneg", {"text": "p", "x": 3}).json() == {"x": 3, "x_squared": 9}
        assert target_rows(target_url, nonneg, "x") == [(3, 9)]

        # an iterator view: every row, in order; no row, nothing exported
        r = post(compute_client, "/words", {"body": "gamma alpha beta"})
        assert r.status_code == 200, r.content
        expected = [(0, "gamma", "GAMMA"), (1, "alpha", "ALPHA"), (2, "beta", "BETA")]
        assert r.json() == [{"pos": p, "word": w, "word_upper": u} for p, w, u in expected]
        assert post(compute_client, "/words", {"body": " "}).json() == []
        assert target_rows(target_url, words, "pos") == expected
    assert row_counts(cs) == before
