"""Readable OpenAPI: operationIds `{kind}_{path}`, unique in an API; info.version; a client generated from it.

The end-to-end test runs the bundled demo as a real `manage.py serve` process on its own,
throwaway Pixeltable home (not the session's: the rows it writes go nowhere else), fetches
its /openapi.json, generates a Python client from it with openapi-python-client (run as a
subprocess of the venv's interpreter, as a user would run it) and talks to the server
through that client only: its module and model names come from the operationIds.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import re
import subprocess
import sys
import tomllib
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client, override_settings

from tests.processes import REPO, free_port, serve_env, stop_embedded_postgres, stop_group, wait_until_up

DEMO = REPO / "examples" / "demo" / "service.toml"
OPERATION_ID = re.compile(r"^[A-Za-z0-9_]+$")
# the demo's documented operations (the media files are not documented, nor the job poll without a background route)
DEMO_OPERATION_IDS = {
    ("post", "/notes"): "insert_notes",
    ("post", "/notes/update"): "update_notes_update",
    ("post", "/notes/delete"): "delete_notes_delete",
    ("post", "/notes/delete-by-tag"): "delete_notes_delete_by_tag",
    ("get", "/notes/lookup"): "query_notes_lookup",
    ("post", "/notes/search"): "query_notes_search",
    ("post", "/images"): "insert_images",
    ("post", "/images/upload"): "insert_images_upload",
    ("post", "/images/update"): "update_images_update",
    ("post", "/images/delete"): "delete_images_delete",
    ("post", "/images/search"): "query_images_search",
    ("post", "/images/thumbnail"): "query_images_thumbnail",
    ("post", "/videos"): "insert_videos",
    ("get", "/videos/frames"): "query_videos_frames",
}
CLIENT_PACKAGE = "pxtserve_demo_client"


def operation_ids(doc: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(method, path): op["operationId"] for path, ops in doc["paths"].items() for method, op in ops.items()}


# --- the id rule --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "path", "expected"),
    [
        ("insert", "/notes", "insert_notes"),
        ("query", "/notes/lookup", "query_notes_lookup"),
        ("delete", "/notes/delete-by-tag", "delete_notes_delete_by_tag"),
        ("insert", "/", "insert"),
        # case is kept; every run of other characters is one `_`, none at the ends
        ("query", "/Items/{id}/detail.json", "query_Items_id_detail_json"),
        ("compute", "//a--b__c//", "compute_a_b_c"),
        ("update", "/café/", "update_caf"),
    ],
)
def test_operation_id_is_kind_and_path(kind: str, path: str, expected: str) -> None:
    from pxtserve.operation_ids import readable_operation_id

    assert readable_operation_id(kind, path) == expected
    assert OPERATION_ID.match(expected)


# --- uniqueness: within a router, and across the routers of one NinjaAPI ------------------------------------------


def _routers(items: Any) -> tuple[Any, Any]:
    """Two routers whose routes would share ids: built afresh each call, as a restarted process builds them."""
    from pxtserve import PixeltableRouter

    fields: dict[str, Any] = {"inputs": ["id", "name"], "outputs": ["id", "name_upper"]}
    one = PixeltableRouter(name="one")
    one.add_insert_route(items, path="/a-b", **fields)
    one.add_insert_route(items, path="/a_b", **fields)  # insert_a_b again, in the same router
    one.add_insert_route(items, path="/bg", background=True, **fields)
    two = PixeltableRouter(name="two")
    two.add_insert_route(items, path="/a-b", **fields)  # insert_a_b again, in another router of the API
    two.add_insert_route(items, path="/a/b/2", **fields)  # insert_a_b_2 as written: taken by the first router
    two.add_insert_route(items, path="/bg", background=True, **fields)  # its job poll: poll_job again
    return one, two


_apis = itertools.count(1)


@contextmanager
def _site(*mounts: tuple[str, Any]) -> Iterator[Client]:
    """A client for a NinjaAPI at /api/ that mounts the given routers at their prefixes, in order."""
    from django.urls import path
    from ninja import NinjaAPI

    n = next(_apis)
    api = NinjaAPI(urls_namespace=f"openapi-ids-{n}")
    for prefix, router in mounts:
        api.add_router(prefix, router)
    urlconf = types.ModuleType(f"openapi_ids_urls_{n}")
    urlconf.urlpatterns = [path("api/", api.urls)]  # type: ignore[attr-defined]
    with override_settings(ROOT_URLCONF=urlconf):
        yield Client()


TWO_ROUTER_IDS = {
    ("post", "/api/one/a-b"): "insert_a_b",
    ("post", "/api/one/a_b"): "insert_a_b_2",
    ("post", "/api/one/bg"): "insert_bg",
    ("get", "/api/one/jobs/{job_id}"): "poll_job",
    ("post", "/api/one/jobs/{job_id}/cancel"): "cancel_job",
    ("get", "/api/one/jobs"): "list_jobs",
    ("post", "/api/two/a-b"): "insert_a_b_3",
    ("post", "/api/two/a/b/2"): "insert_a_b_2_2",
    ("post", "/api/two/bg"): "insert_bg_2",
    ("get", "/api/two/jobs/{job_id}"): "poll_job_2",
    ("post", "/api/two/jobs/{job_id}/cancel"): "cancel_job_2",
    ("get", "/api/two/jobs"): "list_jobs_2",
}


def test_two_routers_on_one_api_get_unique_stable_ids_and_both_serve(
    pxt_tables: Any, new_id: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two = _routers(pxt_tables.items)
    with _site(("/one", one), ("/two", two)) as client:
        doc = client.get("/api/openapi.json").json()
        assert operation_ids(doc) == TWO_ROUTER_IDS
        # Ninja prints this when the document it builds repeats an operationId
        assert "is already used" not in capsys.readouterr().out
        for prefix in ("one", "two"):
            key = new_id()
            r = client.post(f"/api/{prefix}/a-b", json.dumps({"id": key, "name": prefix}), "application/json")
            assert r.status_code == 200, r.content
            assert r.json() == {"id": key, "name_upper": prefix.upper()}

    # the same declarations built again (a restart) get the same ids
    with _site(*zip(("/one", "/two"), _routers(pxt_tables.items), strict=True)) as client:
        assert operation_ids(client.get("/api/openapi.json").json()) == TWO_ROUTER_IDS

    # uniqueness is per API: the second router mounted alone has only its own collisions
    with _site(("/two", two)) as client:
        assert operation_ids(client.get("/api/openapi.json").json()) == {
            ("post", "/api/two/a-b"): "insert_a_b",
            ("post", "/api/two/a/b/2"): "insert_a_b_2",
            ("post", "/api/two/bg"): "insert_bg",
            ("get", "/api/two/jobs/{job_id}"): "poll_job",
            ("post", "/api/two/jobs/{job_id}/cancel"): "cancel_job",
            ("get", "/api/two/jobs"): "list_jobs",
        }


# --- info.version -------------------------------------------------------------------------------------------------


def test_version_falls_back_to_pyproject_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    import pxtserve

    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pxtserve._installed_version() == pyproject["project"]["version"]
    monkeypatch.setattr(metadata, "version", lambda name: "9.8.7")
    assert pxtserve._installed_version() == "9.8.7"


def test_service_document_version_is_pxtserve_version(serve: Any) -> None:
    import pxtserve

    route = 'type = "insert"\ntable = "pxtserve_test.items"\npath = "/v"\n'
    client = serve(f'[[service]]\nname = "v"\n[[service.routes]]\n{route}')
    assert client.get("/openapi.json").json()["info"]["version"] == pxtserve.__version__


# --- the demo, served for real, and a client generated from its document ------------------------------------------


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`manage.py serve demo` on a free port and a throwaway Pixeltable home; yields its base URL."""
    tmp = tmp_path_factory.mktemp("openapi-demo")
    port = free_port()
    pixeltable_home = tmp / "pixeltable"
    env = serve_env(tmp, PIXELTABLE_HOME=str(pixeltable_home))
    log_path = tmp / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "demo", "--config", str(DEMO),
             "--host", "127.0.0.1", "--port", str(port), "--no-workers", "--no-access-log"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/openapi.json", proc, output=lambda: log_path.read_text(errors="replace"))
        yield base
    finally:
        stop_group(proc)
        stop_embedded_postgres(pixeltable_home / "pgdata")


def test_demo_document_has_readable_unique_ids_and_the_version(demo_server: str) -> None:
    import pxtserve

    doc = httpx.get(f"{demo_server}/openapi.json").json()
    ids = operation_ids(doc)
    assert ids == DEMO_OPERATION_IDS
    assert len(set(ids.values())) == len(ids)
    assert all(OPERATION_ID.match(op_id) for op_id in ids.values()), ids
    assert doc["info"]["version"] == pxtserve.__version__


@pytest.fixture
def generated_client(demo_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The demo's client, generated by openapi-python-client into tmp_path and importable as CLIENT_PACKAGE."""
    document = tmp_path / "openapi.json"
    document.write_text(httpx.get(f"{demo_server}/openapi.json").text)
    package = tmp_path / CLIENT_PACKAGE
    venv_bin = str(Path(sys.executable).parent)
    result = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate",
         "--path", str(document), "--output-path", str(package), "--meta", "none"],
        # the venv's ruff on PATH: the generator formats what it writes with it
        env={**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")},
        capture_output=True, text=True, timeout=120, check=False,  # its output is the failure message
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield package
    finally:
        for name in [m for m in sys.modules if m == CLIENT_PACKAGE or m.startswith(CLIENT_PACKAGE + ".")]:
            del sys.modules[name]


def test_generated_client_inserts_and_looks_up_a_note(demo_server: str, generated_client: Path) -> None:
    # one module per operation, named by its operationId
    assert {p.stem for p in (generated_client / "api" / "default").glob("*.py")} - {"__init__"} == set(
        DEMO_OPERATION_IDS.values()
    )
    client_module = importlib.import_module(f"{CLIENT_PACKAGE}.client")
    models = importlib.import_module(f"{CLIENT_PACKAGE}.models")
    insert_notes = importlib.import_module(f"{CLIENT_PACKAGE}.api.default.insert_notes")
    query_notes_lookup = importlib.import_module(f"{CLIENT_PACKAGE}.api.default.query_notes_lookup")
    update_notes_update = importlib.import_module(f"{CLIENT_PACKAGE}.api.default.update_notes_update")

    with client_module.Client(base_url=demo_server, raise_on_unexpected_status=True, timeout=30.0) as client:
        body = models.InsertNotesRequest(id=1, title="hello", body="world", tag="greeting")
        created = insert_notes.sync(client=client, body=body)
        assert isinstance(created, models.InsertNotesResponse), created
        assert created.to_dict() == {
            "id": 1, "title": "hello", "body": "world", "tag": "greeting", "title_upper": "HELLO", "body_length": 5,
        }  # fmt: skip

        found = query_notes_lookup.sync(client=client, id=1)
        assert isinstance(found, models.QueryNotesLookupRow), found
        assert found.to_dict() == {"id": 1, "title": "hello", "body": "world", "title_upper": "HELLO"}

        updated = update_notes_update.sync(client=client, body=models.UpdateNotesUpdateRequest(id=1, title="bye"))
        assert isinstance(updated, models.UpdateNotesUpdateResponse), updated
        assert (updated.title, updated.body, updated.title_upper) == ("bye", "world", "BYE")

        # a documented error comes back as its typed model too
        missing = query_notes_lookup.sync(client=client, id=2)
        assert isinstance(missing, models.ErrorResponse), missing
        assert missing.detail.error_code == "ROW_NOT_FOUND"
