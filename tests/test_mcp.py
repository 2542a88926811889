"""MCP tools (`mcp = true`): a real `manage.py serve --workers 2` driven by the MCP SDK's own client
(`mcp.client.streamable_http` + `ClientSession`): the tools and their schemas, calls that insert, read back,
fail validation, fail with the route's ApiErrors and start background jobs, and the API key on the endpoint.
In-process: PXTSERVE["MCP"] for a Python router, whose routes' own keys guard the endpoint, and `mcp = true`
without the SDK. `serve --mcp` is checked on a dry run started next to the server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import types
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import httpx2
import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, override_settings
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import service_from_toml
from tests.processes import REPO, free_port, serve_env, stop_group, wait_until_up

T = TypeVar("T")
KEY = "mcp-key"
START_TIMEOUT_S = 240

SERVICE = """
[[service]]
name = "mcp-test"
prefix = "/api"
auth = "api_key"
mcp = true
modules = ["tests.pxt_app.schema"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"
inputs = ["id", "name", "tag"]
outputs = ["id", "name", "name_upper"]

[[service.routes]]
type = "update"
table = "pxtserve_test.items"
path = "/items/update"
inputs = ["name"]
outputs = ["id", "name", "name_upper"]

[[service.routes]]
type = "query"
path = "/items/lookup"
query = "tests.pxt_app.queries.item_by_id"
method = "get"
one_row = true

[[service.routes]]
type = "query"
path = "/items/by-tag"
query = "tests.pxt_app.queries.items_by_tag"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items/bg"
inputs = ["id", "name"]
outputs = ["id", "name_upper"]
background = true

# not tools: an upload route (a form body) and a file route
[[service.routes]]
type = "insert"
table = "pxtserve_test.images"
path = "/images"
uploadfile_inputs = ["image"]

[[service.routes]]
type = "query"
path = "/images/thumb"
query = "tests.pxt_app.queries.image_thumb"
method = "get"
return_fileresponse = true
"""

TOOLS = {"insert_items", "update_items_update", "query_items_lookup", "query_items_by_tag", "insert_items_bg"}


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    log: Path
    # the JSON of `serve insert ... --mcp --dry-run --json`, run while the server started
    dry_run: subprocess.CompletedProcess[str]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def server(pxt_tables, tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("mcp")
    (tmp / "service.toml").write_text(SERVICE)
    port = free_port()
    env = serve_env(tmp, PXTSERVE_API_KEYS=KEY, PXTSERVE_JOB_WORKERS="1")
    command = [sys.executable, "manage.py", "serve", "mcp-test", "--config", str(tmp / "service.toml")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--no-access-log"]
    log = tmp / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    dry_run_command = [sys.executable, "manage.py", "serve", "insert", "--table", "pxtserve_test.items"]
    dry_run_command += ["--path", "/x", "--modules", "tests.pxt_app.schema", "--mcp", "--dry-run", "--json"]
    try:
        dry_run = subprocess.run(
            dry_run_command,
            check=False,
            cwd=REPO,
            env=serve_env(tmp),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        started = Server(f"http://127.0.0.1:{port}/api", process, log, dry_run)
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process, START_TIMEOUT_S, started.output, processes=2)
        yield started
    finally:
        stop_group(process)


def mcp_session(server: Server, use: Callable[[ClientSession], Awaitable[T]], key: str | None = KEY) -> T:
    """`use` a ClientSession of the SDK's streamable-HTTP client on the server's endpoint, initialized."""

    async def run() -> T:
        headers = {"X-API-Key": key} if key else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            streamable_http_client(f"{server.base}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await use(session)

    try:
        return asyncio.run(run())
    except BaseExceptionGroup as group:  # the client's task groups wrap what failed: raise that
        failed: BaseException = group
        while isinstance(failed, BaseExceptionGroup) and len(failed.exceptions) == 1:
            failed = failed.exceptions[0]
        raise failed from None


def call(server: Server, tool: str, arguments: dict[str, Any]) -> Any:
    return mcp_session(server, lambda session: session.call_tool(tool, arguments))


def error_body(result: Any) -> dict[str, Any]:
    """A tool error's JSON body (the route's own error body)."""
    assert result.is_error, result
    return json.loads(result.content[0].text)


# --- listing -------------------------------------------------------------------------------------------------------


def test_tools_are_the_json_routes_named_by_their_operation_ids(server):
    listed = mcp_session(server, lambda session: session.list_tools())
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == TOOLS  # the upload and the file route are left out
    openapi = httpx.get(f"{server.base}/openapi.json", headers={"X-API-Key": KEY}, timeout=30).json()
    operation_ids = {op["operationId"] for path in openapi["paths"].values() for op in path.values()}
    assert TOOLS <= operation_ids

    insert = tools["insert_items"].input_schema
    assert insert["type"] == "object" and set(insert["properties"]) == {"id", "name", "tag"}
    assert set(insert["required"]) == {"id", "name"}
    assert insert["properties"]["id"]["type"] == "integer"
    lookup = tools["query_items_lookup"].input_schema
    assert set(lookup["properties"]) == {"id"} and lookup["required"] == ["id"]
    assert "limit" in tools["query_items_by_tag"].input_schema["properties"]

    assert "insert" in tools["insert_items"].description
    assert "POST /items" in tools["insert_items"].description
    assert "pxtserve_test" in tools["insert_items"].description
    assert "item_by_id" in tools["query_items_lookup"].description
    assert "job_url" in tools["insert_items_bg"].description


# --- calls ---------------------------------------------------------------------------------------------------------


def test_a_tool_inserts_and_a_query_tool_reads_it_back(server, new_id):
    key = new_id()
    inserted = call(server, "insert_items", {"id": key, "name": "ada", "tag": "mcp-read"})
    assert not inserted.is_error, inserted
    assert inserted.structured_content == {"id": key, "name": "ada", "name_upper": "ADA"}
    assert json.loads(inserted.content[0].text) == inserted.structured_content

    found = call(server, "query_items_lookup", {"id": key})  # a GET route: the arguments go in the query string
    assert found.structured_content == {"id": key, "name": "ada", "name_upper": "ADA"}
    by_tag = call(server, "query_items_by_tag", {"tag": "mcp-read"})
    assert by_tag.structured_content == {"rows": [{"id": key, "name": "ada", "tag": "mcp-read"}]}
    # the same table the HTTP route reads
    http = httpx.get(f"{server.base}/items/lookup", params={"id": key}, headers={"X-API-Key": KEY}, timeout=30)
    assert http.json() == found.structured_content


def test_a_validation_error_is_a_tool_error_naming_the_fields(server):
    result = call(server, "insert_items", {"id": "not a number"})
    fields = {tuple(error["loc"][-1:]) for error in error_body(result)["detail"]}
    assert fields == {("id",), ("name",)}
    assert error_body(call(server, "query_items_lookup", {}))["detail"][0]["loc"][-1] == "id"


def test_the_routes_api_errors_are_tool_errors(server, new_id):
    missing = call(server, "update_items_update", {"id": new_id(), "name": "nobody"})
    assert error_body(missing)["detail"]["error_code"] == "ROW_NOT_FOUND"
    assert error_body(call(server, "query_items_lookup", {"id": new_id()}))["detail"]["error_code"] == "ROW_NOT_FOUND"

    key = new_id()
    assert not call(server, "insert_items", {"id": key, "name": "first"}).is_error
    duplicate = error_body(call(server, "insert_items", {"id": key, "name": "second"}))
    assert duplicate["detail"]["error_code"]  # Pixeltable's code, as the HTTP route answers it
    http = httpx.post(f"{server.base}/items", json={"id": key, "name": "second"}, headers={"X-API-Key": KEY})
    assert http.json() == duplicate


def test_a_background_tool_answers_a_job_handle(server, new_id):
    key = new_id()
    handle = call(server, "insert_items_bg", {"id": key, "name": "later"}).structured_content
    assert set(handle) == {"id", "job_url"}
    assert handle["job_url"].startswith(f"{server.base}/jobs/")
    deadline = time.monotonic() + 120
    while (job := httpx.get(handle["job_url"], headers={"X-API-Key": KEY}, timeout=30).json())["status"] != "done":
        assert job["status"] in ("pending", "running"), job
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    assert job["result"] == {"id": key, "name_upper": "LATER"}


def test_an_unknown_tool_is_a_protocol_error(server):
    from mcp.shared.exceptions import MCPError

    with pytest.raises(MCPError, match="unknown tool 'nope'"):
        call(server, "nope", {})


# --- auth ----------------------------------------------------------------------------------------------------------


def test_a_client_without_the_key_is_refused(server):
    from mcp.shared.exceptions import MCPError

    with pytest.raises(MCPError) as refused:
        mcp_session(server, lambda session: session.list_tools(), key=None)
    assert "error response" in str(refused.value)  # the SDK's client does not tell the status: see them below
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    mcp_headers = {"Accept": "application/json, text/event-stream"}
    no_key = httpx.post(f"{server.base}/mcp", json=message, headers=mcp_headers, timeout=30)
    assert no_key.status_code == 401
    wrong = httpx.post(f"{server.base}/mcp", json=message, headers={**mcp_headers, "X-API-Key": "wrong"}, timeout=30)
    assert wrong.status_code == 403
    right = httpx.post(f"{server.base}/mcp", json=message, headers={**mcp_headers, "X-API-Key": KEY}, timeout=30)
    assert right.status_code == 200 and {t["name"] for t in right.json()["result"]["tools"]} == TOOLS
    # the Host check of every API path (DNS rebinding)
    rebound = httpx.post(
        f"{server.base}/mcp", json=message, headers={**mcp_headers, "X-API-Key": KEY, "Host": "evil.example"}
    )
    assert rebound.status_code == 400 and rebound.json()["detail"]["error_code"] == "DISALLOWED_HOST"


def test_serve_mcp_flag_turns_it_on(server):
    assert server.dry_run.returncode == 0, server.dry_run.stderr
    assert json.loads(server.dry_run.stdout)["mcp"] == "/mcp"


# --- in-process: a Python router, and no SDK -------------------------------------------------------------------------


def _rpc(client: AsyncClient, path: str, **headers: str) -> Any:
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    return async_to_sync(client.post)(
        path,
        message,
        content_type="application/json",
        headers={"Accept": "application/json, text/event-stream", **headers},
    )


def test_the_setting_serves_a_python_router_whose_route_keys_guard_the_endpoint(pxt_tables):
    import pixeltable as pxt
    from django.test import Client
    from django.urls import path
    from ninja import NinjaAPI

    from pxtserve import PixeltableRouter
    from pxtserve.auth import api_key_auth
    from tests.pxt_app.queries import item_by_id

    items = pxt_tables.items

    @pxt.query
    def lookup(id: int):
        """The item with this id, its upper-cased name included."""
        return items.where(items.id == id).select(items.id, items.name_upper)

    def site(router: PixeltableRouter, n: int) -> types.ModuleType:
        api = NinjaAPI(urls_namespace=f"mcp-test-{n}")
        api.add_router("/pxt", router)
        urlconf = types.ModuleType(f"mcp_test_urls_{n}")
        urlconf.urlpatterns = [path("api/", api.urls)]  # type: ignore[attr-defined]
        return urlconf

    with override_settings(PXTSERVE={"MCP": True}):
        router = PixeltableRouter()
    router.add_query_route(path="/lookup", query=lookup, method="get", one_row=True)
    router.add_insert_route(items, path="/items", auth=api_key_auth(lambda: ["route-key"]))
    plain = PixeltableRouter()
    plain.add_query_route(path="/lookup", query=item_by_id, method="get", one_row=True)

    with override_settings(ROOT_URLCONF=site(router, 1)):
        client = AsyncClient()
        assert _rpc(client, "/api/pxt/mcp").status_code == 401  # the insert route's key is needed
        listed = _rpc(client, "/api/pxt/mcp", **{"X-API-Key": "route-key"})
        assert listed.status_code == 200
        tools = {t["name"]: t for t in listed.json()["result"]["tools"]}
        assert set(tools) == {"query_lookup", "insert_items"}
        assert "its upper-cased name included" in tools["query_lookup"]["description"]  # the query's docstring
        # a WSGI request (Django's sync client) has no ASGI scope to hand to the SDK: said so
        wsgi = Client().post("/api/pxt/mcp", {}, content_type="application/json", headers={"X-API-Key": "route-key"})
        assert wsgi.status_code == 500 and wsgi.json()["detail"]["error_code"] == "MCP_NEEDS_ASGI"
    with override_settings(ROOT_URLCONF=site(plain, 2)):
        assert _rpc(AsyncClient(), "/api/pxt/mcp").status_code == 404  # off by default


def test_mcp_without_the_sdk_is_a_clear_error_at_start(pxt_tables, monkeypatch):
    from pxtserve.errors import ServiceConfigError
    from pxtserve.service import build_service

    config = service_from_toml(
        '[[service]]\nname = "no-sdk"\nmcp = true\n[[service.routes]]\n'
        'type = "insert"\ntable = "pxtserve_test.items"\npath = "/items"\n'
    )
    monkeypatch.setitem(sys.modules, "mcp.server.lowlevel", None)  # as if pxtserve[mcp] were not installed
    with pytest.raises(ServiceConfigError, match=r"field 'mcp': .*pip install pxtserve\[mcp\]"):
        build_service(config)
