"""Batch insert and compute routes (`batch = true`): rows in order, all or nothing, errors naming the row.

The insert route's HTTP behaviour runs against one real `manage.py serve` process for the module, started in
single-endpoint mode with the CLI's `--batch` flag; the other options and the declaration checks use the
Django test client.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pixeltable as pxt
import pytest
from django.conf import settings
from django.test import override_settings

from pxtserve.errors import RouteDefinitionError

from .conftest import mounted, service_from_toml, serving
from .processes import REPO, free_port, serve_env, stop_group, wait_until_up
from .test_export_routes import make_target, rows_of

TABLE = "pxtserve_test.batch_items"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import tests.pxt_app.batch_schema  # noqa: F401 - the table exists before the server starts

    tmp = tmp_path_factory.mktemp("batch")
    port = free_port()
    command = [sys.executable, "manage.py", "serve", "insert", "--table", TABLE, "--path", "/rows", "--batch"]
    command += ["--modules", "tests.pxt_app.batch_schema", "--host", "127.0.0.1", "--port", str(port), "--no-workers"]
    with open(tmp / "out.log", "w") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=serve_env(tmp), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/healthz", process, output=(tmp / "out.log").read_text)
        yield url
    finally:
        stop_group(process)


def stored(keys: list[int]) -> list[int]:
    """Which of the keys the table holds (read through Pixeltable, not through the server)."""
    t = pxt.get_table(TABLE)
    return sorted(row["id"] for row in t.where(t.id.isin(keys)).select(t.id).collect())


def rows_for(keys: list[int]) -> list[dict[str, Any]]:
    return [{"id": k, "name": f"n{k}", "x": 1 + i % 3} for i, k in enumerate(keys)]


def test_a_batch_is_answered_in_order_and_stored(base, new_id):
    keys = [new_id() for _ in range(6)][::-1]  # descending keys: the order is the request's, not the key's
    r = httpx.post(f"{base}/rows", json={"rows": rows_for(keys)})
    assert r.status_code == 200, r.text
    answered = r.json()["rows"]
    assert [row["id"] for row in answered] == keys
    assert [row["name_upper"] for row in answered] == [f"N{k}" for k in keys]
    assert answered[1]["inverse"] == 0.5
    assert stored(keys) == sorted(keys)


def test_a_duplicate_key_in_row_3_fails_the_batch_and_stores_nothing(base, new_id):
    existing = new_id()
    assert httpx.post(f"{base}/rows", json={"rows": rows_for([existing])}).status_code == 200
    keys = [new_id(), new_id(), new_id(), existing, new_id()]
    r = httpx.post(f"{base}/rows", json={"rows": rows_for(keys)})
    assert 400 <= r.status_code < 500, r.text
    detail = r.json()["detail"]
    assert detail["error_code"] == "CONSTRAINT_VIOLATION"
    assert detail["message"].startswith("rows.3: ") and "nothing of the batch was stored" in detail["message"]
    assert stored([k for k in keys if k != existing]) == []


def test_a_key_twice_in_the_batch_names_its_second_row(base, new_id):
    keys = [new_id(), new_id(), new_id()]
    r = httpx.post(f"{base}/rows", json={"rows": rows_for([*keys, keys[1]])})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["message"].startswith("rows.3: ")
    assert stored(keys) == []


def test_a_computed_column_that_raises_names_the_row_and_the_column(base, new_id):
    keys = [new_id() for _ in range(4)]
    rows = rows_for(keys)
    rows[2]["x"] = 0  # batch_inverse raises
    r = httpx.post(f"{base}/rows", json={"rows": rows})
    assert r.status_code == 400, r.text
    message = r.json()["detail"]["message"]
    assert message.startswith("rows.2: computed column 'inverse' failed"), message
    assert "In row" not in message  # Pixeltable's own row number counts something else
    assert stored(keys) == []


def test_a_bad_row_is_a_422_at_its_index_and_field(base, new_id):
    rows = rows_for([new_id() for _ in range(5)])
    rows[3]["name"] = 5
    r = httpx.post(f"{base}/rows", json={"rows": rows})
    assert r.status_code == 422, r.text
    locs = [item["loc"] for item in r.json()["detail"]]
    assert ["body", "payload", "rows", 3, "name"] in locs, locs
    assert stored([row["id"] for row in rows]) == []


def write_calls(base: str) -> tuple[float, float]:
    """The count and sum of the batch_items writer's calls (pxtserve_write_batch_size: rows per call)."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {"_count": 0.0, "_sum": 0.0}
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics").text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name.startswith("pxtserve_write_batch_size") and labels.get("table") == TABLE.replace(".", "/"):
                assert labels["kind"] == "insert"  # a batch is an insert call like any other
                for suffix in found:
                    if sample.name.endswith(suffix):
                        found[suffix] += sample.value
    return found["_count"], found["_sum"]


def test_a_batch_is_one_writer_call_of_its_rows(base, new_id):
    count, total = write_calls(base)
    assert httpx.post(f"{base}/rows", json={"rows": rows_for([new_id() for _ in range(7)])}).status_code == 200
    assert write_calls(base) == (count + 1, total + 7)


def test_openapi_shows_the_batch_and_the_row_models(base):
    doc = httpx.get(f"{base}/openapi.json").json()
    schemas = doc["components"]["schemas"]
    batch = schemas["InsertRowsBatchRequest"]["properties"]["rows"]
    assert batch["items"] == {"$ref": "#/components/schemas/InsertRowsRequest"}
    assert (batch["minItems"], batch["maxItems"]) == (1, 1000)
    assert set(schemas["InsertRowsRequest"]["properties"]) == {"id", "name", "x"}
    assert schemas["InsertRowsBatchResponse"]["properties"]["rows"]["items"]["$ref"].endswith("InsertRowsResponse")


# --- the other options (Django test client) -----------------------------------------------------------------

SERVICE = f"""
[[service]]
name = "batches"
modules = ["tests.pxt_app.batch_schema"]

[[service.routes]]
type = "insert"
table = "{TABLE}"
path = "/rows"
batch = true
outputs = ["id", "name_upper"]

[[service.routes]]
type = "insert"
table = "{TABLE}"
path = "/bg/rows"
batch = true
background = true
outputs = ["id", "name_upper"]

[[service.routes]]
type = "compute"
table = "{TABLE}"
path = "/compute"
batch = true
outputs = ["id", "inverse"]
"""


@pytest.fixture
def batches(pxt_tables: Any) -> Iterator[Any]:
    import tests.pxt_app.batch_schema  # noqa: F401

    with serving(service_from_toml(SERVICE)) as client:
        yield client


def post(client: Any, path: str, body: Any) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


def test_max_batch_rows_bounds_the_batch(pxt_tables, new_id):
    import tests.pxt_app.batch_schema  # noqa: F401

    keys = [new_id() for _ in range(4)]
    with (
        override_settings(PXTSERVE={**settings.PXTSERVE, "MAX_BATCH_ROWS": 3}),
        serving(service_from_toml(SERVICE)) as client,
    ):
        r = post(client, "/rows", {"rows": rows_for(keys)})
        assert r.status_code == 422, r.content
        assert r.json()["detail"][0]["loc"][-1] == "rows" and "at most 3" in r.json()["detail"][0]["msg"]
        assert post(client, "/rows", {"rows": []}).status_code == 422
        assert post(client, "/rows", {"rows": rows_for(keys[:3])}).status_code == 200
    assert stored(keys) == sorted(keys[:3])


def test_compute_batch_answers_in_order_and_stores_nothing(batches, new_id):
    keys = [new_id() for _ in range(3)]
    rows = rows_for(keys)
    r = post(batches, "/compute", {"rows": rows})
    assert r.status_code == 200, r.content
    assert r.json() == {"rows": [{"id": k, "inverse": 1 / row["x"]} for k, row in zip(keys, rows, strict=True)]}
    rows[1]["x"] = 0
    r = post(batches, "/compute", {"rows": rows})
    assert r.status_code == 400 and r.json()["detail"]["message"].startswith("rows.1: computed column 'inverse'")
    assert stored(keys) == []


@pytest.mark.django_db(transaction=True)
def test_a_background_batchs_result_is_the_rows(batches, new_id):
    keys = [new_id() for _ in range(3)]
    r = post(batches, "/bg/rows", {"rows": rows_for(keys)})
    assert r.status_code == 202, r.content
    status = batches.get(r.json()["job_url"].removeprefix("http://testserver")).json()
    assert status["status"] == "done", status
    assert status["result"] == {"rows": [{"id": k, "name_upper": f"N{k}"} for k in keys]}
    assert stored(keys) == sorted(keys)


def test_export_sql_exports_every_row_from_python(pxt_tables, sqlite_url, new_id):
    from pxtserve import PixeltableRouter

    target = make_target(sqlite_url, "batch_export", pk=True)
    router = PixeltableRouter()
    export = {"db_connect": sqlite_url, "table": "batch_export"}
    router.add_insert_route(TABLE, path="/rows", outputs=["id", "name", "name_upper"], batch=True, export_sql=export)
    keys = [new_id() for _ in range(4)]
    with mounted(router) as client:
        r = post(client, "/api/pxt/rows", {"rows": rows_for(keys)})
        assert r.status_code == 200, r.content
    assert rows_of(sqlite_url, target) == [(k, f"n{k}", f"N{k}") for k in keys]
    # `serve --dry-run` shows a row's fields as the inputs
    [described] = router.describe()
    assert described["batch"] is True and described["inputs"] == ["id", "name", "x"]


def test_a_batch_takes_json_only(pxt_tables):
    from pxtserve import PixeltableRouter

    router = PixeltableRouter()
    with pytest.raises(RouteDefinitionError, match="a batch route takes JSON only") as info:
        router.add_insert_route("pxtserve_test.images", path="/up", uploadfile_inputs=["image"], batch=True)
    assert info.value.field == "uploadfile_inputs"
    with pytest.raises(RouteDefinitionError, match="a batch route takes JSON only"):
        router.add_compute_route("pxtserve_test.images", path="/up2", uploadfile_inputs=["image"], batch=True)


def test_a_refused_media_input_names_its_row(pxt_tables, tmp_path, new_id):
    import PIL.Image

    from pxtserve import PixeltableRouter

    image = tmp_path / "ok.png"  # under the system tmp dir: an allowed MEDIA_INPUT_DIRS of the test settings
    PIL.Image.new("RGB", (4, 4), "red").save(image)
    router = PixeltableRouter()
    router.add_insert_route("pxtserve_test.images", path="/images", inputs=["id", "image"], batch=True)
    keys = [new_id(), new_id()]
    rows = [{"id": keys[0], "image": str(image)}, {"id": keys[1], "image": "/etc/passwd"}]
    with mounted(router) as client:
        r = post(client, "/api/pxt/images", {"rows": rows})
    assert r.status_code == 422, r.content
    assert r.json()["detail"]["message"].startswith("rows.1: 'image': server-local paths are not accepted")
    t = pxt.get_table("pxtserve_test.images")
    assert t.where(t.id.isin(keys)).count() == 0
