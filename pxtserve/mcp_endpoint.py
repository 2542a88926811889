"""`<mount>/mcp`: a router's tools (pxtserve.mcp_tools) over the Model Context Protocol's streamable HTTP.

Built on the official SDK (`pip install pxtserve[mcp]`): its low-level `Server` lists and calls
the tools, its `StreamableHTTPSessionManager` speaks the transport. Stateless, with JSON answers:
every POST is complete in itself (no session, no server-initiated stream), so it works the same
under `serve --workers N` and on several nodes, and the endpoint is an ordinary Ninja operation of
the router: behind the router's auth, the Host check, MAX_REQUEST_BODY, request ids and metrics
of every API path, for a service and for a router mounted in a site of one's own alike.

The view hands its request to the SDK's ASGI app and collects the answer (one JSON body, or
202 for a notification). The session manager holds an anyio task group for the requests it
serves; a stateless one serves one request each here, run inside the view, so there is nothing
to start with the server (serve runs uvicorn with lifespan off) and nothing tied to one event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import TYPE_CHECKING, Any, Protocol

from django.http import HttpRequest, HttpResponse, HttpResponseBase

import pxtserve
from pxtserve import conf
from pxtserve.errors import ApiError, RouteDefinitionError, error_response
from pxtserve.intake import JSON_BODY_ATTRIBUTE
from pxtserve.mcp_tools import MCP_PATH, Tool, ToolRouter, call_tool, endpoint_denial, route_auths, router_tools

if TYPE_CHECKING:
    import mcp_types
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel import Server

NOT_INSTALLED = "mcp = true (PXTSERVE['MCP']) needs the MCP SDK, which is not installed: pip install pxtserve[mcp]"
# the Django request of the MCP request being served, for the SDK's handlers (they run in tasks it starts)
_request: contextvars.ContextVar[HttpRequest] = contextvars.ContextVar("pxtserve_mcp_request")


class Router(ToolRouter, Protocol):
    """The PixeltableRouter an endpoint is added to (its Ninja side, beyond what tools need)."""

    router_id: int

    def add_api_operation(self, path: str, methods: list[str], view_func: Any, **kwargs: Any) -> None: ...


def add_endpoint(router: Router) -> None:
    """Serve `router`'s tools at `<mount>/mcp` (POST); a RouteDefinitionError naming `mcp` without the SDK."""
    try:
        import mcp.server.lowlevel  # noqa: F401
    except ImportError:
        raise RouteDefinitionError(NOT_INSTALLED, field="mcp") from None
    endpoint = McpEndpoint(router)

    async def mcp_view(request: HttpRequest) -> HttpResponseBase:  # a function: Ninja sets attributes on it
        return await endpoint.view(request)

    # JSON-RPC in a JSON body, which the view reads itself: held to a JSON Content-Type (pxtserve.intake)
    setattr(mcp_view, JSON_BODY_ATTRIBUTE, True)
    router.add_api_operation(
        MCP_PATH,
        ["POST"],
        mcp_view,
        url_name=f"pxtserve_mcp_{router.router_id}",
        operation_id=f"pxtserve_mcp_{router.router_id}",
        include_in_schema=False,
    )


class McpEndpoint:
    """One router's MCP server; its tools are read from the router when first asked for (all routes are in)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        # the tools by name, and the routes' own auths
        self._routes: tuple[dict[str, Tool], list[Any]] | None = None
        self.server = self._server()

    def _read_routes(self) -> tuple[dict[str, Tool], list[Any]]:
        # routes are registered before the URLconf is first read, so before any request: read once
        if self._routes is None:
            self._routes = ({tool.name: tool for tool in router_tools(self.router)}, route_auths(self.router))
        return self._routes

    def tools(self) -> dict[str, Tool]:
        return self._read_routes()[0]

    async def view(self, request: HttpRequest) -> HttpResponseBase:
        if not hasattr(request, "scope"):
            return error_response(ApiError(500, "MCP_NEEDS_ASGI", f"{MCP_PATH} is served under ASGI only"))
        # the router's auth has passed (Ninja); a route of its own with a key needs that key here too
        denied = await endpoint_denial(request, self._read_routes()[1])
        if denied is not None:
            return denied
        token = _request.set(request)
        try:
            return await self._serve(request)
        finally:
            _request.reset(token)

    async def _serve(self, request: HttpRequest) -> HttpResponse:
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        manager = StreamableHTTPSessionManager(
            app=self.server,
            json_response=True,
            stateless=True,
            # the limit of every API request holds (pxtserve.limits, before the body is read)
            max_request_body_size=conf.settings().MAX_REQUEST_BODY,
        )
        answer = _Answer(request.body)
        async with manager.run():
            await manager.handle_request(request.scope, answer.receive, answer.send)  # type: ignore[attr-defined]
        return answer.response()

    def _server(self) -> Server[Any]:
        from mcp.server.lowlevel import Server

        return Server(
            "pxtserve",
            version=pxtserve.__version__,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        import mcp_types

        tools = [
            mcp_types.Tool(name=tool.name, description=tool.description, input_schema=tool.input_schema)
            for tool in self.tools().values()
        ]
        return mcp_types.ListToolsResult(tools=tools)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        import mcp_types
        from mcp.shared.exceptions import MCPError

        tool = self.tools().get(params.name)
        if tool is None:
            raise MCPError(mcp_types.INVALID_PARAMS, f"unknown tool {params.name!r}")
        answer = await call_tool(_request.get(), tool, params.arguments or {})
        return mcp_types.CallToolResult(
            content=[mcp_types.TextContent(type="text", text=answer.body)],
            structured_content=None if answer.is_error else answer.structured(),
            is_error=answer.is_error,
        )


class _Answer:
    """The ASGI side of one request to the SDK: the body already read, the response collected."""

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self._sent = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        # asked again only by a listener for the client going away: it is there until the view has answered
        await self._sent.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                self._sent.set()

    def response(self) -> HttpResponse:
        response = HttpResponse(b"".join(self.chunks), status=self.status)
        for name, value in self.headers:
            if name.lower() != b"content-length":  # Django's own, for the body it sends
                response[name.decode("latin-1")] = value.decode("latin-1")
        return response


__all__ = ["NOT_INSTALLED", "McpEndpoint", "add_endpoint"]
