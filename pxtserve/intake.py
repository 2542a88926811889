"""What the lean API handler (pxtserve.asgi) decides from a request's head, before it reads any of the body.

A request that declares a body is resolved to the Ninja operation that would serve it, and:

- when that operation's auth (the route's own, or the service's) would refuse the credentials in the
  headers, the body is never read: the request runs through the chain with an empty body and gets the
  401/403 it always got, so a client without a key cannot make the server receive 100 MB first;
- when the operation takes a JSON body, the Content-Type must say JSON (`application/json` or
  `<type>/<subtype>+json`, parameters allowed); anything else is 415. A page on another site can send
  text/plain or a form encoding without a CORS preflight, never application/json;
- when it is a multipart request, its uploads are parsed while they arrive (pxtserve.upload_stream),
  instead of being spooled whole first.
"""

from __future__ import annotations

import inspect
import io
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404
from ninja.errors import AuthenticationError, HttpError
from ninja.operation import Operation as NinjaOperation
from ninja.operation import PathView

from pxtserve.errors import ApiError, error_response
from pxtserve.headers import answer_before_chain
from pxtserve.path_matches import resolve_path

# the URL match of the head's resolution, kept on the request so that the handler does not resolve it again
MATCH_ATTRIBUTE = "pxtserve_resolver_match"
# a view function with this attribute set takes a JSON body that Ninja does not parse itself (the MCP endpoint)
JSON_BODY_ATTRIBUTE = "pxtserve_json_body"
# a view function with this attribute true waits for nothing but its Pixeltable call (pxtserve.views): the handler
# leaves the disconnect listener to that call, as the coroutine function kept on the request under DISCONNECTED
LIGHT_VIEW_ATTRIBUTE = "pxtserve_light"
DISCONNECTED_ATTRIBUTE = "pxtserve_disconnected"
# methods whose requests a browser can send cross-site as "simple" requests, or that carry bodies
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class HeadVerdict:
    """What to do before reading the body. `answer`: a response to send now, the body unread. `refused`: the
    route's auth refuses these headers (the chain, run on an empty body, answers). `multipart`: parse the
    uploads while they arrive. `operation`: the Ninja operation that serves the request, when it was looked up."""

    answer: HttpResponseBase | None = None
    refused: bool = False
    multipart: bool = False
    operation: NinjaOperation | None = None


PASS = HeadVerdict()


def declares_body(scope: dict[str, Any]) -> bool:
    """A Content-Length above 0 or a Transfer-Encoding: requests without either have nothing to read."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False


async def inspect_head(request: HttpRequest) -> HeadVerdict:
    """The verdict on `request`, built from the scope with an empty body (nothing is read here)."""
    if request.method not in _BODY_METHODS:
        return PASS
    operation = ninja_operation(request)
    if operation is None:
        return PASS
    if operation.auth_callbacks and await _authenticated(operation, request) is False:
        return HeadVerdict(refused=True)
    if takes_json_body(operation) and not is_json(request.content_type or ""):
        return HeadVerdict(answer=answer_before_chain(request, error_response(unsupported_media_type(request))))
    return HeadVerdict(multipart=request.content_type == "multipart/form-data", operation=operation)


def ninja_operation(request: HttpRequest) -> NinjaOperation | None:
    """The Ninja operation the URLconf would run for `request`, or None (no route, not a Ninja view); the URL match
    is left on the request (MATCH_ATTRIBUTE)."""
    try:
        match = resolve_path(request)
    except Resolver404:
        return None
    setattr(request, MATCH_ATTRIBUTE, match)
    path_view = _path_view(match.func)
    if path_view is None:
        return None
    return next((op for op in path_view.operations if request.method in op.methods), None)


def waits_only_in_its_call(operation: NinjaOperation | None) -> bool:
    """Whether the operation's view waits for nothing but its Pixeltable call (LIGHT_VIEW_ATTRIBUTE)."""
    return operation is not None and getattr(operation.view_func, LIGHT_VIEW_ATTRIBUTE, False) is True


def _path_view(view: Any) -> PathView | None:
    # Ninja's URL pattern callback is a closure over its PathView (ninja.operation.PathView.get_view): Ninja offers
    # no public way from a resolved URL to the operations it serves, and the auth to check is theirs
    code, cells = getattr(view, "__code__", None), getattr(view, "__closure__", None)
    if code is None or not cells:
        return None
    for name, cell in zip(code.co_freevars, cells, strict=False):
        if name == "self" and isinstance(cell.cell_contents, PathView):
            return cell.cell_contents
    return None


async def _authenticated(operation: NinjaOperation, request: HttpRequest) -> bool | None:
    """Whether one of the operation's auth callbacks accepts the request's headers, as Ninja decides it; None when
    a callback cannot tell here (it raised something else than Ninja's refusals, e.g. it needs the database or
    the body): then the body is read and the chain decides, as before."""
    for callback in operation.auth_callbacks:
        try:
            result = callback(request)
            if inspect.isawaitable(result):
                result = await result
        except (HttpError, AuthenticationError):  # a wrong key: refused
            return False
        except Exception:  # noqa: BLE001 (undecided: see above)
            return None
        if result:
            return True
    return False


def takes_json_body(operation: NinjaOperation) -> bool:
    """A body parameter (Ninja's Body source), or a view that parses JSON itself; not forms, files or queries."""
    if getattr(operation.view_func, JSON_BODY_ATTRIBUTE, False):
        return True
    return any(getattr(model, "__ninja_param_source__", None) == "body" for model in operation.models)


def is_json(content_type: str) -> bool:
    """`application/json` or any `<type>/<subtype>+json` (Django has split off the parameters)."""
    main = content_type.strip().lower()
    kind, _, subtype = main.partition("/")
    return bool(kind) and (main == "application/json" or (subtype.endswith("+json") and len(subtype) > 5))


def unsupported_media_type(request: HttpRequest) -> ApiError:
    received = request.META.get("CONTENT_TYPE") or "no Content-Type"
    return ApiError(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        f"this route takes a JSON body: send Content-Type: application/json (or a +json type); received {received}",
    )


def empty_body() -> io.BytesIO:
    """The body of a request answered without reading its own."""
    return io.BytesIO()
