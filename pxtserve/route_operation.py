"""The Ninja operation that runs a route's view (pxtserve.views.make_operation_view).

Ninja's async `Operation.run` builds an HttpResponse before every call of the view (the
"temporal response", in which a view could set a status or headers before returning
plain data). A route's view takes no `response` argument and answers with a response
of its own, so that one is built only when a view returns something else (an
idempotency guard's replay, a future view returning data): then exactly as Ninja does.
A view whose parameters all come from the query string gets them parsed without the
QueryDict Ninja reads them from (`query_values`); a query string that does not validate
goes through Ninja's own parse for its 422. Everything else (auth and throttle checks,
error handling) is Ninja's own code, called as Ninja calls it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pydantic
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from ninja.operation import AsyncOperation


class RouteRun:
    """Mixed over the class of a route's Ninja operation (an AsyncOperation, or pxtserve.operation_ids' subclass)."""

    async def run(self: Any, request: HttpRequest, **kw: Any) -> HttpResponseBase:
        error = await self._run_checks(request)
        if error:
            return error
        try:
            values = query_values(self, request, kw)
            if values is None:
                values = self._get_values(request, kw, None)  # type: ignore[arg-type]  # no `response` argument
            result = await self.view_func(request, **values)
            if isinstance(result, HttpResponseBase):
                return result
            return self._result_to_response(request, result, self.api.create_temporal_response(request))
        except Exception as e:  # noqa: BLE001 (Ninja's own: on_exception answers or re-raises it)
            return self.api.on_exception(request, e)


def query_values(operation: Any, request: HttpRequest, path_params: dict[str, Any]) -> dict[str, Any] | None:
    """The view's arguments of an operation whose only parameters come from the query string, as Ninja's
    `_get_values` makes them, without the QueryDict it builds first; None when it does not apply or the values do
    not validate: Ninja's own code then runs (and answers its 422, or Django's 400 for too many fields).

    Ninja's parse: Django's QueryDict (parse_qsl, blank values kept, percent-decoding in DEFAULT_CHARSET, at most
    DATA_UPLOAD_MAX_NUMBER_FIELDS fields), then for each key its last value, or every value for a list field.
    """
    models = operation.models
    if path_params or len(models) != 1 or models[0].__ninja_param_source__ != "query":
        return None
    model = models[0]
    try:
        pairs = parse_qsl(
            request.META.get("QUERY_STRING", ""),
            keep_blank_values=True,
            encoding=settings.DEFAULT_CHARSET,
            max_num_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS,
        )
    except ValueError:
        return None
    list_fields = getattr(model, "__ninja_collection_fields__", ())
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in list_fields:
            data.setdefault(key, []).append(value)
        else:
            data[key] = value
    try:
        return dict(model.model_validate(model._map_data_paths(data), context={"request": request}))
    except pydantic.ValidationError:
        return None


# RouteRun over each operation class it was mixed over
_classes: dict[type[Any], type[Any]] = {}


def use_route_operation(operations: list[Any], view: Any) -> None:
    """Give the Ninja operation of `view` among `operations` RouteRun's `run`: only a plain async one (Ninja's own
    `run`, no streamed response, no `response` argument), which is what make_operation_view's views are."""
    for operation in operations:
        cls = type(operation)
        if (
            operation.view_func is view
            and isinstance(operation, AsyncOperation)
            and cls.run is AsyncOperation.run
            and operation.stream_format is None
            and not operation.signature.response_arg
        ):
            route_class = _classes.get(cls)
            if route_class is None:
                route_class = _classes[cls] = type(f"Route{cls.__name__}", (RouteRun, cls), {})
            # the same instance (as pxtserve.operation_ids does): RouteRun adds no state, only `run`; Ninja's
            # per-mount copies (Operation.clone) keep the class
            operation.__class__ = route_class
