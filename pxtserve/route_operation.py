"""The Ninja operation that runs a route's view (pxtserve.views.make_operation_view).

Ninja's async `Operation.run` builds an HttpResponse before every call of the view (the
"temporal response", in which a view could set a status or headers before returning
plain data). A route's view takes no `response` argument and answers with a response
of its own, so that one is built only when a view returns something else (an
idempotency guard's replay, a future view returning data): then exactly as Ninja does.
Everything else (auth and throttle checks, parameter validation and its 422s, error
handling) is Ninja's own code, called as Ninja calls it.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponseBase
from ninja.operation import AsyncOperation


class RouteRun:
    """Mixed over the class of a route's Ninja operation (an AsyncOperation, or pxtserve.operation_ids' subclass)."""

    async def run(self: Any, request: HttpRequest, **kw: Any) -> HttpResponseBase:
        error = await self._run_checks(request)
        if error:
            return error
        try:
            values = self._get_values(request, kw, None)  # type: ignore[arg-type]  # no `response` argument
            result = await self.view_func(request, **values)
            if isinstance(result, HttpResponseBase):
                return result
            return self._result_to_response(request, result, self.api.create_temporal_response(request))
        except Exception as e:  # noqa: BLE001 (Ninja's own: on_exception answers or re-raises it)
            return self.api.on_exception(request, e)


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
