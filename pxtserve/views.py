"""The HTTP side of a route operation: an async Ninja view that validates the
request, runs the operation on the Pixeltable pool and turns the outcome into
a response."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

import pixeltable as pxt
from django.http import HttpRequest, HttpResponse
from ninja import Body, Form, Query

from pxtserve.errors import ApiError, error_response
from pxtserve.executor import run_in_pool
from pxtserve.media import MediaUrls, file_response, resolve_media_request
from pxtserve.routes.base import RouteOperation

_PARAM_WRAPPERS = {"body": Body, "query": Query, "form": Form}


def operation_inputs(operation: RouteOperation, payload: Any) -> dict[str, Any]:
    """The validated request fields as the operation takes them."""
    if payload is None:
        return {}
    # an update leaves out the optional columns the client did not send, instead of nulling them
    return payload.model_dump(exclude_unset=operation.kind == "update")


def make_operation_view(operation: RouteOperation, media_url_name: str) -> Callable[..., Any]:
    async def view(request: HttpRequest, payload: Any = None) -> Any:
        inputs = operation_inputs(operation, payload)
        media = MediaUrls(request, media_url_name)
        try:
            result = await run_in_pool(operation.execute, inputs, media)
        except (ApiError, pxt.Error) as exc:
            return error_response(exc)
        if isinstance(result, Path):
            return file_response(result)
        return result

    params = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=HttpRequest)]
    model = operation.request_model
    if model is not None and model.model_fields:
        wrapper = _PARAM_WRAPPERS[operation.input_location]
        params.append(
            inspect.Parameter("payload", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=wrapper[model])  # type: ignore[index]
        )
    view.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    view.__name__ = f"{operation.kind}_{operation.path.strip('/').replace('/', '_') or 'root'}"
    return view


def media_view(request: HttpRequest, path: str) -> HttpResponse:
    return file_response(resolve_media_request(path))
