"""pxtserve inside someone else's Django site: the Python API (PixeltableRouter, decorator routes)
mounted next to other APIs and views, the settings-driven service, and the documented example."""

import io
import itertools
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import PIL.Image
import pydantic
import pytest
import sqlalchemy as sa
from django.test import Client, override_settings

from pxtserve import PixeltableRouter, SqlExport
from pxtserve.errors import RouteDefinitionError
from pxtserve.media import MediaUrls

from .bodies import response_body
from .conftest import mounted

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "README.md"
DOC_HEADING = "## Use it in your Django site"

_mounts = itertools.count(1)

thirdparty = override_settings(ROOT_URLCONF="tests.thirdparty.urls")


def post(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


def file_bytes(response: Any) -> bytes:
    return response_body(response)


@pytest.fixture(scope="module")
def png_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("thirdparty") / "red.png"
    PIL.Image.new("RGB", (32, 24), (200, 30, 30)).save(path)
    return str(path)


# --- the third-party site (tests/thirdparty/urls.py) ----------------------------------------------------------------


@thirdparty
def test_insert_update_delete_routes_built_in_python(pxt_tables, new_id):
    client, key = Client(), new_id()
    r = post(client, "/api/pxt/items", {"id": key, "name": "ada", "score": 1.5, "tag": "tp"})
    assert r.status_code == 200, r.content
    assert r.json() == {"id": key, "name": "ada", "name_upper": "ADA", "score_double": 3.0}

    r = post(client, "/api/pxt/items/update", {"id": key, "score": 4.0})
    assert r.status_code == 200, r.content
    assert r.json() == {"id": key, "score": 4.0, "score_double": 8.0}

    r = post(client, "/api/pxt/items/delete", {"id": key})
    assert r.status_code == 200, r.content
    assert r.json() == {"num_rows": 1}
    assert post(client, "/api/pxt/items/update", {"id": key, "score": 1.0}).status_code == 404


@thirdparty
def test_query_routes_take_query_function_objects(pxt_tables, new_id):
    client, tag = Client(), f"tp-{new_id()}"
    keys = [new_id(), new_id()]
    for key in keys:
        assert post(client, "/api/pxt/items", {"id": key, "name": f"n{key}", "tag": tag}).status_code == 200

    r = post(client, "/api/pxt/items/by-tag", {"tag": tag})
    assert r.status_code == 200, r.content
    assert r.json() == {"rows": [{"id": k, "name": f"n{k}", "tag": tag} for k in keys]}

    r = client.get("/api/pxt/items/one", {"id": keys[0]})
    assert r.status_code == 200, r.content
    assert r.json() == {"id": keys[0], "name": f"n{keys[0]}", "name_upper": f"N{keys[0]}"}


@thirdparty
def test_decorator_routes(pxt_tables, new_id):
    client, key = Client(), new_id()
    r = post(client, "/api/pxt/items/card", {"id": key, "name": "bo", "score": 0.5})
    assert r.status_code == 200, r.content
    assert r.json() == {"id": key, "title": f"#{key} BO", "score": 0.5}

    r = post(client, "/api/pxt/items/rescore", {"id": key, "score": 2.5})
    assert r.status_code == 200, r.content
    assert r.json() == {"id": key, "doubled": 5.0, "rescored": True}

    # an update of a missing row is a 404, without calling the function
    r = post(client, "/api/pxt/items/rescore", {"id": new_id(), "score": 1.0})
    assert r.status_code == 404
    assert r.json()["detail"]["error_code"] == "ROW_NOT_FOUND"


@thirdparty
@pytest.mark.django_db(transaction=True)
def test_background_decorator_route_delivers_the_model_as_the_job_result(pxt_tables, new_id):
    client, key = Client(), new_id()
    assert post(client, "/api/pxt/items", {"id": key, "name": "later", "score": 1.0}).status_code == 200
    r = post(client, "/api/pxt/items/rescore-later", {"id": key, "score": 3.0})
    assert r.status_code in (200, 202), r.content
    job_url = r.json()["job_url"]
    assert job_url.startswith("http://testserver/api/pxt/jobs/"), job_url
    status = client.get(job_url.removeprefix("http://testserver")).json()
    assert status["status"] == "done", status
    assert status["result"] == {"id": key, "doubled": 6.0, "rescored": True}


@thirdparty
def test_media_urls_point_under_the_mount_and_resolve(pxt_tables, new_id, png_path):
    client, key = Client(), new_id()
    r = post(client, "/api/pxt/images", {"id": key, "image": png_path, "tag": "tp"})
    assert r.status_code == 200, r.content
    thumb = r.json()["thumb"]
    assert thumb.startswith("http://testserver/api/pxt/media/"), thumb
    media = client.get(thumb.removeprefix("http://testserver"))
    assert media.status_code == 200
    assert PIL.Image.open(io.BytesIO(file_bytes(media))).size == (8, 8)

    # a query's media, and a decorator route's function, get the same absolute URLs
    r = client.get("/api/pxt/images/thumb", {"id": key})
    assert r.status_code == 200, r.content
    assert r.json()["thumb"].startswith("http://testserver/api/pxt/media/")

    card_key = new_id()
    with open(png_path, "rb") as upload:
        r = client.post("/api/pxt/images/card", {"id": str(card_key), "image": upload})
    assert r.status_code == 200, r.content
    assert r.json()["id"] == card_key
    url = r.json()["thumbnail"]
    assert url.startswith("http://testserver/api/pxt/media/"), url
    assert client.get(url.removeprefix("http://testserver")).status_code == 200


@thirdparty
def test_openapi_of_each_api_shows_its_own_routes(pxt_tables):
    client = Client()
    doc = client.get("/api/openapi.json").json()
    paths = set(doc["paths"])
    expected = {
        "/api/pxt/items",
        "/api/pxt/items/update",
        "/api/pxt/items/delete",
        "/api/pxt/items/by-tag",
        "/api/pxt/items/one",
        "/api/pxt/images",
        "/api/pxt/images/thumb",
        "/api/pxt/items/card",
        "/api/pxt/items/rescore",
        "/api/pxt/images/card",
    }
    assert expected <= paths, paths
    assert "/other/ping" not in paths
    # a decorator route publishes its function's return model as the response body
    card = doc["paths"]["/api/pxt/items/card"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert card == {"$ref": "#/components/schemas/ItemCard"}
    assert set(doc["components"]["schemas"]["ItemCard"]["properties"]) == {"id", "title", "score"}

    other = client.get("/other/openapi.json").json()
    assert set(other["paths"]) == {"/other/ping"}
    assert client.get("/other/ping").json() == {"pong": True}
    assert client.get("/api/docs").status_code == 200


@thirdparty
def test_plain_django_view_beside_the_apis(pxt_tables):
    r = Client().get("/")
    assert r.status_code == 200 and r.content == b"third-party home"


# --- the settings-driven service: PXTSERVE settings + include("pxtserve.urls") ----------------------------------------

_SITE_SCRIPT = """
import json, sys
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0, interactive=False)
from django.test import Client

key = int(sys.argv[1])
c = Client()
out = {}
r = c.post("/svc/items", json.dumps({"id": key, "name": "svc"}), content_type="application/json")
out["insert"] = [r.status_code, r.json()]
r = c.get("/svc/items/one", {"id": key})
out["query"] = [r.status_code, r.json()]
out["svc_paths"] = sorted(c.get("/svc/openapi.json").json()["paths"])
r = c.get("/api/pxt/items/one", {"id": key})
out["python_api"] = [r.status_code, r.json()]
out["home"] = c.get("/").content.decode()
print("RESULT " + json.dumps(out))
"""


def test_settings_driven_service_in_a_site_of_its_own(pxt_tables, new_id):
    """A whole site on tests/thirdparty/settings.py, in a fresh process: pxtserve.urls builds the service
    named by settings.PXTSERVE on first import, beside the routes the site builds in Python."""
    key = new_id()
    env = {k: v for k, v in os.environ.items() if k != "PXTSERVE_SERVICE_JSON"}
    env["DJANGO_SETTINGS_MODULE"] = "tests.thirdparty.settings"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", _SITE_SCRIPT, str(key)],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))
    assert out["insert"] == [200, {"id": key, "name_upper": "SVC"}]
    assert out["query"] == [200, {"id": key, "name": "svc", "name_upper": "SVC"}]
    assert {"/svc/items", "/svc/items/one"} <= set(out["svc_paths"])
    assert not [p for p in out["svc_paths"] if not p.startswith("/svc/")]
    assert out["python_api"] == [200, {"id": key, "name": "svc", "name_upper": "SVC"}]
    assert out["home"] == "third-party home"


# --- decorator routes: the registration rules -------------------------------------------------------------------------


class Out(pydantic.BaseModel):
    id: int


def register_insert(pxt_tables: types.ModuleType, fn: Any, outputs: list[str] | None = None) -> PixeltableRouter:
    router = PixeltableRouter()
    router.insert_route(pxt_tables.items, path="/x", inputs=["id", "name"], outputs=outputs or ["id", "name"])(fn)
    return router


def rule_error(pxt_tables: types.ModuleType, fn: Any, outputs: list[str] | None = None) -> str:
    router = PixeltableRouter()
    decorate = router.insert_route(pxt_tables.items, path="/x", inputs=["id", "name"], outputs=outputs)
    with pytest.raises(RouteDefinitionError) as info:
        decorate(fn)
    assert router.operations == []  # nothing half-registered
    return str(info.value)


def test_rule_parameters_must_be_keyword_only(pxt_tables):
    def positional(id: int, *, name: str) -> Out:
        return Out(id=id)

    msg = rule_error(pxt_tables, positional, ["id", "name"])
    assert msg == (
        "insert_route(): 'positional' parameter 'id' must be keyword-only "
        "(place one parameter per output after `*` in the signature)"
    )


def test_rule_var_keyword_parameters_are_rejected(pxt_tables):
    def catch_all(**columns: Any) -> Out:
        return Out(id=columns["id"])

    msg = rule_error(pxt_tables, catch_all, ["id"])
    assert "'catch_all' parameter 'columns' must be keyword-only" in msg and "**kwargs is not accepted" in msg


def test_rule_parameters_must_be_annotated(pxt_tables):
    def unannotated(*, id: int, name) -> Out:
        return Out(id=id)

    msg = rule_error(pxt_tables, unannotated, ["id", "name"])
    assert msg == "insert_route(): 'unannotated' parameter 'name' has no type annotation"


def test_rule_every_parameter_is_an_output(pxt_tables):
    def extra(*, id: int, name: str, score: float | None) -> Out:
        return Out(id=id)

    msg = rule_error(pxt_tables, extra, ["id", "name"])
    assert msg == "insert_route(): 'extra' parameter 'score' is not in the defined outputs ['id', 'name']"


def test_rule_every_output_is_a_parameter(pxt_tables):
    def partial(*, id: int) -> Out:
        return Out(id=id)

    msg = rule_error(pxt_tables, partial, ["id", "name", "name_upper"])
    assert msg == (
        "insert_route(): 'partial' is missing parameters for outputs ['name', 'name_upper']; "
        "every defined output must appear as a keyword-only parameter"
    )


def test_rule_outputs_default_to_every_column(pxt_tables):
    def only_id(*, id: int) -> Out:
        return Out(id=id)

    msg = rule_error(pxt_tables, only_id, None)
    assert "'only_id' is missing parameters for outputs ['name', 'score', 'meta', 'tag', 'name_upper', " in msg

    def every_column(
        *,
        id: int,
        name: str,
        score: float | None,
        meta: dict | None,
        tag: str | None,
        name_upper: str,
        score_double: float | None,
    ) -> Out:
        return Out(id=id)

    router = PixeltableRouter()
    assert router.insert_route(pxt_tables.items, path="/x", inputs=["id", "name"])(every_column) is every_column


def test_rule_annotation_must_match_the_column_type(pxt_tables):
    def wrong_type(*, id: str, name: str) -> Out:
        return Out(id=0)

    msg = rule_error(pxt_tables, wrong_type, ["id", "name"])
    assert msg == (
        "insert_route(): 'wrong_type' parameter 'id' has annotation str (String), "
        "which is incompatible with column type Int"
    )


def test_rule_nullable_column_needs_optional_annotation(pxt_tables):
    def not_optional(*, id: int, score: float) -> Out:
        return Out(id=id)

    msg = rule_error(pxt_tables, not_optional, ["id", "score"])
    assert msg == (
        "insert_route(): 'not_optional' parameter 'score' has annotation float (Float), which is incompatible "
        "with column type Float | None (the column is nullable: annotate it as `T | None`)"
    )


def test_rule_non_nullable_column_may_be_annotated_optional(pxt_tables):
    def lenient(*, id: int | None, name: str | None) -> Out:
        return Out(id=id or 0)

    router = register_insert(pxt_tables, lenient)
    assert len(router.operations) == 1


def test_rule_media_columns_are_url_strings(pxt_tables):
    def as_image(*, id: int, thumb: PIL.Image.Image) -> Out:
        return Out(id=id)

    router = PixeltableRouter()
    decorate = router.insert_route(pxt_tables.images, path="/x", inputs=["id", "image"], outputs=["id", "thumb"])
    with pytest.raises(RouteDefinitionError) as info:
        decorate(as_image)
    msg = str(info.value)
    assert msg.startswith("insert_route(): 'as_image' parameter 'thumb' has annotation ")
    assert msg.endswith(
        "which is incompatible with column type String "
        "(media columns are delivered as URL strings: annotate them as `str`)"
    )

    def as_url(*, id: int, thumb: str) -> Out:
        return Out(id=id)

    assert decorate(as_url) is as_url


def test_rule_annotation_must_be_a_pixeltable_type(pxt_tables):
    def opaque(*, id: object, name: str) -> Out:
        return Out(id=0)

    msg = rule_error(pxt_tables, opaque, ["id", "name"])
    assert msg == "insert_route(): 'opaque' parameter 'id': cannot interpret annotation object as a Pixeltable type"


def test_rule_annotations_must_resolve(pxt_tables):
    def dangling(*, id: "Undefined", name: str) -> Out:  # noqa: F821
        return Out(id=0)

    msg = rule_error(pxt_tables, dangling, ["id", "name"])
    assert msg.startswith("insert_route(): 'dangling': cannot resolve its type annotations: NameError")
    assert "Undefined" in msg


def test_rule_return_annotation_must_be_a_pydantic_model(pxt_tables):
    def returns_dict(*, id: int, name: str) -> dict:
        return {"id": id}

    def returns_nothing(*, id: int, name: str):
        return Out(id=id)

    assert rule_error(pxt_tables, returns_dict, ["id", "name"]) == (
        "insert_route(): 'returns_dict' must have a return annotation that is a pydantic.BaseModel subclass; got dict"
    )
    assert rule_error(pxt_tables, returns_nothing, ["id", "name"]).endswith("pydantic.BaseModel subclass; got None")


def test_rules_apply_to_update_routes(pxt_tables):
    def positional(id: int, score: float | None) -> Out:
        return Out(id=id)

    router = PixeltableRouter()
    decorate = router.update_route(pxt_tables.items, path="/u", inputs=["score"], outputs=["id", "score"])
    with pytest.raises(RouteDefinitionError) as info:
        decorate(positional)
    assert str(info.value).startswith("update_route(): 'positional' parameter 'id' must be keyword-only")


def test_route_arguments_are_checked_before_the_function(pxt_tables):
    router = PixeltableRouter()
    with pytest.raises(RouteDefinitionError, match="unknown output column 'nope'"):
        router.insert_route(pxt_tables.items, path="/x", outputs=["id", "nope"])
    with pytest.raises(RouteDefinitionError, match="'id' is a primary key column"):
        router.update_route(pxt_tables.items, path="/u", inputs=["id"])


def test_the_decorator_returns_the_function_and_paths_stay_unique(pxt_tables):
    def fmt(*, id: int, name: str) -> Out:
        return Out(id=id)

    router = PixeltableRouter()
    assert router.insert_route(pxt_tables.items, path="/x", inputs=["id", "name"], outputs=["id", "name"])(fmt) is fmt
    assert fmt(id=3, name="n") == Out(id=3)
    with pytest.raises(RouteDefinitionError, match="another route already serves POST /x"):
        router.add_insert_route(pxt_tables.items, path="/x", inputs=["id", "name"])


# --- decorator routes: at request time --------------------------------------------------------------------------------


def test_function_errors_and_wrong_results_are_500s_naming_the_function(pxt_tables, new_id):
    router = PixeltableRouter()

    @router.insert_route(pxt_tables.items, path="/boom", inputs=["id", "name"], outputs=["id"])
    def boom(*, id: int) -> Out:
        raise RuntimeError("secret detail")

    @router.insert_route(pxt_tables.items, path="/wrong", inputs=["id", "name"], outputs=["id"])
    def wrong(*, id: int) -> Out:
        return {"id": id}  # type: ignore[return-value]

    with mounted(router) as client:
        r = post(client, "/api/pxt/boom", {"id": new_id(), "name": "a"})
        assert r.status_code == 500
        assert r.json()["detail"] == {
            "error_code": "ROUTE_FUNCTION_FAILED",
            "message": "route function 'boom' raised RuntimeError; see the server log",
        }
        r = post(client, "/api/pxt/wrong", {"id": new_id(), "name": "a"})
        assert r.status_code == 500
        assert r.json()["detail"]["message"] == "route function 'wrong' returned dict, not its declared return type Out"


def test_response_model_with_aliases(pxt_tables, new_id):
    """Ninja validates the body again before sending it: a model's dump must pass its own validation."""

    class Camel(pydantic.BaseModel):
        item_id: int = pydantic.Field(alias="itemId")
        upper_name: str = pydantic.Field(validation_alias="upperName")

    router = PixeltableRouter()

    @router.insert_route(pxt_tables.items, path="/camel", inputs=["id", "name"], outputs=["id", "name_upper"])
    def camel(*, id: int, name_upper: str) -> Camel:
        return Camel(itemId=id, upperName=name_upper)

    key = new_id()
    with mounted(router) as client:
        r = post(client, "/api/pxt/camel", {"id": key, "name": "cam"})
        assert r.status_code == 200, r.content
        assert r.json() == {"item_id": key, "upper_name": "CAM"}
        schema = client.get("/api/openapi.json").json()["components"]["schemas"]["Camel"]
        assert set(schema["properties"]) == {"item_id", "upper_name"}


def test_update_route_leaves_unsent_inputs_alone(pxt_tables, new_id):
    class Row(pydantic.BaseModel):
        name: str
        score: float | None

    router = PixeltableRouter()

    @router.update_route(pxt_tables.items, path="/u", inputs=["name", "score"], outputs=["name", "score"])
    def row(*, name: str, score: float | None) -> Row:
        return Row(name=name, score=score)

    key = new_id()
    pxt_tables.items.insert([{"id": key, "name": "kept", "score": 1.0}])
    with mounted(router) as client:
        r = post(client, "/api/pxt/u", {"id": key, "score": 2.0})
        assert r.status_code == 200, r.content
        assert r.json() == {"name": "kept", "score": 2.0}


def test_background_operation_returns_the_model_as_json(pxt_tables, new_id):
    """Whatever runs a background job calls execute(): its result is the function's model, dumped as JSON."""

    class Stamp(pydantic.BaseModel):
        id: int
        label: str
        tags: list[str]

    router = PixeltableRouter()

    @router.insert_route(pxt_tables.items, path="/bg", inputs=["id", "name"], outputs=["id", "name"], background=True)
    def stamp(*, id: int, name: str) -> Stamp:
        return Stamp(id=id, label=name.title(), tags=[name])

    (operation,) = router.operations
    assert operation.background is True
    key = new_id()
    result = operation.execute({"id": key, "name": "job"}, MediaUrls(None, "unused", base_url="http://h/media/"))
    assert result == {"id": key, "label": "Job", "tags": ["job"]}
    json.dumps(result)


def test_export_sql_writes_the_returned_model(pxt_tables, new_id, tmp_path):
    db = f"sqlite:///{tmp_path / 'export.sqlite3'}"
    engine = sa.create_engine(db)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE cards (id INTEGER PRIMARY KEY, title TEXT NOT NULL, score REAL)"))

    class Card(pydantic.BaseModel):
        id: int
        title: str
        score: float | None

    router = PixeltableRouter()

    @router.insert_route(
        pxt_tables.items,
        path="/cards",
        inputs=["id", "name", "score"],
        outputs=["id", "name_upper", "score"],
        export_sql=SqlExport(db_connect=db, table="cards"),
    )
    def card(*, id: int, name_upper: str, score: float | None) -> Card:
        return Card(id=id, title=f"card {name_upper}", score=score)

    key = new_id()
    with mounted(router) as client:
        r = post(client, "/api/pxt/cards", {"id": key, "name": "ex", "score": 0.25})
        assert r.status_code == 200, r.content
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id, title, score FROM cards")).all() == [(key, "card EX", 0.25)]

    # the target is checked against the model's fields at registration
    class Wider(pydantic.BaseModel):
        id: int
        title: str
        extra: str

    decorate = PixeltableRouter().insert_route(
        pxt_tables.items,
        path="/w",
        inputs=["id", "name"],
        outputs=["id"],
        export_sql=SqlExport(db_connect=db, table="cards"),
    )

    def wider(*, id: int) -> Wider:
        return Wider(id=id, title="", extra="")

    with pytest.raises(RouteDefinitionError, match="column 'extra' does not exist in the target table"):
        decorate(wider)
    engine.dispose()


# --- the documented example ---------------------------------------------------------------------------------------


def doc_python_block(text: str, heading: str = DOC_HEADING) -> str:
    """The first ```python block of the section under `heading` (up to the next heading of the same level)."""
    start = text.index(heading + "\n")
    section = text[start + len(heading) :]
    level = heading.split(" ", 1)[0]
    following = re.search(rf"^{level} ", section, flags=re.MULTILINE)
    if following:
        section = section[: following.start()]
    match = re.search(r"^```python\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    assert match, f"no ```python block under {heading!r}"
    return match.group(1)


def test_documented_example_runs_and_serves(pxt_tables, new_id):
    code = doc_python_block(DOC.read_text())
    module = types.ModuleType(f"docs_example_urls_{next(_mounts)}")
    exec(compile(code, str(DOC), "exec"), module.__dict__)  # noqa: S102 - the documented code is the test subject
    key, tag = new_id(), f"doc-{new_id()}"
    with override_settings(ROOT_URLCONF=module):
        client = Client()
        r = post(client, "/api/pxt/items", {"id": key, "name": "ada", "tag": tag})
        assert r.status_code == 200, r.content
        assert r.json() == {"id": key, "name": "ada", "name_upper": "ADA"}
        r = post(client, "/api/pxt/items/by-tag", {"tag": tag})
        assert r.json() == {"rows": [{"id": key, "name": "ada"}]}
        r = post(client, "/api/pxt/greet", {"id": new_id(), "name": "bo"})
        assert r.status_code == 200, r.content
        assert r.json()["greeting"] == "HELLO, BO!"
        assert post(client, "/api/pxt/items/delete", {"id": key}).json() == {"num_rows": 1}
