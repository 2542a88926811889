"""A router's routes as MCP tools (`mcp = true`, PXTSERVE["MCP"]; the protocol side is pxtserve.mcp_endpoint).

One tool per JSON route: its name is the route's operationId, its description says the route's
kind, method, path, table or query and docstring, its input schema is the route's request model.
A call is an in-process request to the route's own URL, resolved by Django to the route's Ninja
view and given the MCP request's headers (API key included): validation, auth, group commit,
REQUEST_TIMEOUT, error bodies and background job handles are the route's own, not redone here.

Left out: upload routes (their body is multipart form data, which a tool call does not carry) and
file routes (their answer is a file, not JSON). Nothing here imports the MCP SDK.
"""

from __future__ import annotations

import io
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.http import HttpRequest, HttpResponseBase
from django.urls import resolve
from ninja.constants import NOT_SET

from pxtserve.asgi import ApiRequest
from pxtserve.auth import check_auth
from pxtserve.routes.operation import Operation
from pxtserve.routes.query import QueryOperation

# the endpoint's path under the router's mount point
MCP_PATH = "/mcp"
# headers of the MCP request that describe its own body, or MCP's transport: not the route request's
_NOT_FORWARDED = frozenset({b"content-type", b"content-length", b"accept", b"mcp-protocol-version", b"mcp-session-id"})


class ToolRouter(Protocol):
    """What tools need of a PixeltableRouter (typed here: pxtserve.router imports this module's user)."""

    operations: list[Operation]
    # Ninja's: path -> PathView, whose operations carry the operationIds
    path_operations: dict[str, Any]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    operation: Operation


@dataclass(frozen=True)
class ToolAnswer:
    """What the route answered: its status and JSON body (an error status makes it a tool error)."""

    status: int
    body: str

    @property
    def is_error(self) -> bool:
        return self.status >= 400

    def structured(self) -> dict[str, Any] | None:
        """The body as MCP structured content, which must be a JSON object (a list or a scalar is text only)."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def is_tool(operation: Operation) -> bool:
    """A JSON route: neither uploads (form bodies) nor a file answer."""
    return operation.input_location != "form" and not operation.returns_file


def router_tools(router: ToolRouter) -> list[Tool]:
    """The router's tools, in declaration order."""
    ids = {
        (path, method): ninja_operation.operation_id
        for path, view in router.path_operations.items()
        for ninja_operation in view.operations
        for method in ninja_operation.methods
    }
    return [
        Tool(ids[(op.path, op.method)], describe(op), input_schema(op), op) for op in router.operations if is_tool(op)
    ]


def describe(operation: Operation) -> str:
    """What the tool does: the route's summary, kind, method and path, table or query, docstring, job handles."""
    what = "query" if "query" in operation.details else "table"
    target = operation.details.get(what)
    on = f", {what} {target}" if target else ""
    text = f"{operation.summary}. Route: {operation.kind}, {operation.display_name}{on}."
    doc = _docstring(operation)
    if doc:
        text += f"\n\n{doc}"
    if operation.background:
        text += (
            '\n\nRuns as a background job: answers {"id", "job_url"} at once; GET job_url until "status" is "done" '
            '(with "result") or "error".'
        )
    return text


def _docstring(operation: Operation) -> str | None:
    function = getattr(operation.spec, "response_function", None)
    if function is not None and function.__doc__:
        return function.__doc__.strip()
    if isinstance(operation, QueryOperation):
        return operation.function.comment()
    return None


def input_schema(operation: Operation) -> dict[str, Any]:
    """The JSON schema of the route's request model (MCP wants an object schema, also for no arguments)."""
    model = operation.request_model
    if model is None or not model.model_fields:
        return {"type": "object", "properties": {}, "additionalProperties": False}
    return model.model_json_schema()


def route_auths(router: ToolRouter) -> list[Any]:
    """The tool routes' own Ninja auths (the router's, or the API's, guards the endpoint itself, as Ninja applies
    it to every operation of the router)."""
    auths: list[Any] = []
    for op in router.operations:
        if is_tool(op) and op.auth is not NOT_SET and op.auth is not None and op.auth not in auths:
            auths.append(op.auth)
    return auths


async def endpoint_denial(request: HttpRequest, auths: Sequence[Any]) -> HttpResponseBase | None:
    """The 401/403 for an MCP request that some route's auth refuses: the endpoint needs a key every one accepts."""
    for auth in auths:
        denied = await check_auth(auth, request)
        if denied is not None:
            return denied
    return None


async def call_tool(request: HttpRequest, tool: Tool, arguments: Mapping[str, Any]) -> ToolAnswer:
    """Run the tool's route for `arguments` as a request to its URL, next to the MCP endpoint's (`request`'s)."""
    operation = tool.operation
    mount = request.path_info.removesuffix(MCP_PATH)
    path_info = mount + operation.path
    route_request = _route_request(request, operation.method, path_info, arguments)
    match = resolve(path_info, getattr(request, "urlconf", None))
    # media and job URLs are reversed in the namespace of the route's own match, as for an HTTP request
    route_request.resolver_match = match
    response = await match.func(route_request, *match.args, **match.kwargs)
    return ToolAnswer(response.status_code, response.content.decode())


def _route_request(request: HttpRequest, method: str, path_info: str, arguments: Mapping[str, Any]) -> HttpRequest:
    """A request to the route built like the ASGI handler builds one: the MCP request's scope (client, server,
    scheme, headers: Host, API key, X-Forwarded-*) with the route's method, path and the arguments as its input."""
    scope: dict[str, Any] = request.scope  # type: ignore[attr-defined]  # an ASGI request: see mcp_endpoint
    query = b""
    body = b""
    if method == "GET":
        query = urllib.parse.urlencode(_query_items(arguments), doseq=True).encode()
    else:
        body = json.dumps(dict(arguments)).encode()
    headers = [(name, value) for name, value in scope.get("headers", []) if name.lower() not in _NOT_FORWARDED]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    script_name = request.META.get("SCRIPT_NAME", "")
    route_scope = {
        **scope,
        "method": method,
        "path": script_name + path_info,
        "raw_path": (script_name + path_info).encode(),
        "query_string": query,
        "headers": headers,
    }
    return ApiRequest(route_scope, io.BytesIO(body))


def _query_items(arguments: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Arguments as query-string values the way a client writes them (true/false, JSON for objects)."""
    items: list[tuple[str, Any]] = []
    for name, value in arguments.items():
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            if isinstance(item, bool):
                item = "true" if item else "false"
            elif isinstance(item, dict):
                item = json.dumps(item)
            items.append((name, item))
    return items
