"""Response functions: the decorator routes' user function, which shapes the body from the output columns.

`@router.insert_route(...)`, `update_route` and `compute_route` run the same Pixeltable
call as the plain routes, then call the decorated function with the rendered outputs
(media as URL strings); the pydantic model it returns is the body. Two forms:

- per-column: one keyword-only, annotated parameter per output, called with the one row;
- batch (compute routes of an iterator view only): one parameter annotated `list[M]`,
  `M` a pydantic model with a field per output, called with every row (possibly none).

The signature is checked against the outputs when the function is decorated, so a
mismatch stops the site at start-up instead of failing the first request.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
from pixeltable import type_system as ts

from pxtserve.errors import ApiError, RouteDefinitionError
from pxtserve.routes.operation import RowsOperation

_logger = logging.getLogger("pxtserve.routes")

RouteFunction = Callable[..., pydantic.BaseModel]


def apply_response_function(
    operation: RowsOperation, fn: Any, *, decorator: str, batch_allowed: bool, export: bool
) -> None:
    """Check `fn` against the operation's outputs and make it shape the operation's body."""
    fn_name = getattr(fn, "__name__", None) or repr(fn)
    batch = batch_model(fn) if batch_allowed else None
    if batch is not None:
        param, row_model = batch
        result_model = check_batch_function(fn, row_model, operation.output_types, fn_name=fn_name, decorator=decorator)

        def call(rendered: list[dict[str, Any]]) -> dict[str, Any]:
            return _result(operation, fn, fn_name, result_model, {param: [row_model(**row) for row in rendered]})

    else:
        result_model = check_route_function(fn, operation.output_types, fn_name=fn_name, decorator=decorator)

        def call(rendered: list[dict[str, Any]]) -> dict[str, Any]:
            return _result(operation, fn, fn_name, result_model, rendered[0])

    operation.response_function = call
    operation.response_model = _accepting_field_names(result_model)
    operation.export_columns = _model_columns(result_model, fn_name=fn_name, decorator=decorator) if export else {}
    operation.details.update(function=fn_name, response_model=result_model.__name__)


def _result(
    operation: RowsOperation, fn: Any, fn_name: str, result_model: type[pydantic.BaseModel], kwargs: dict[str, Any]
) -> dict[str, Any]:
    try:
        result = fn(**kwargs)
    except ApiError:
        raise
    except Exception as exc:  # a bug in the user's function: log the traceback, answer without its details
        _logger.exception("route %s: %s raised", operation.display_name, fn_name)
        raise ApiError(
            500, "ROUTE_FUNCTION_FAILED", f"route function {fn_name!r} raised {type(exc).__name__}; see the server log"
        ) from exc
    if not isinstance(result, result_model):
        raise ApiError(
            500,
            "INVALID_ROUTE_RESULT",
            f"route function {fn_name!r} returned {type(result).__name__}, "
            f"not its declared return type {result_model.__name__}",
        )
    return result.model_dump(mode="json")


def batch_model(fn: Any) -> tuple[str, type[pydantic.BaseModel]] | None:
    """(parameter name, M) if `fn` has the batch form, one parameter annotated list[M]; otherwise None."""
    try:
        params = list(inspect.signature(fn).parameters.values())
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - not the batch form; check_route_function reports what is wrong
        return None
    if len(params) != 1 or params[0].kind not in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    ):
        return None
    annotation = hints.get(params[0].name)
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is not list or len(args) != 1:
        return None
    if not (isinstance(args[0], type) and issubclass(args[0], pydantic.BaseModel)):
        return None
    return params[0].name, args[0]


def is_batch_function(fn: Any) -> bool:
    return batch_model(fn) is not None


def check_batch_function(
    fn: Any,
    row_model: type[pydantic.BaseModel],
    schema: Mapping[str, ts.ColumnType],
    *,
    fn_name: str,
    decorator: str,
) -> type[pydantic.BaseModel]:
    """The batch form: M has exactly one field per output, each typed to accept the column's values."""
    prefix = f"{decorator}: {fn_name!r}"
    fields = row_model.model_fields
    outputs = list(schema)
    extra = [name for name in fields if name not in schema]
    if extra:
        raise RouteDefinitionError(
            f"{prefix}: {row_model.__name__} field(s) {extra} are not in the defined outputs {outputs}", field="outputs"
        )
    missing = [name for name in outputs if name not in fields]
    if missing:
        raise RouteDefinitionError(
            f"{prefix}: {row_model.__name__} is missing fields for outputs {missing}; "
            "every defined output must be a field of the row model",
            field="outputs",
        )
    for name, info in fields.items():
        _check_annotation(info.annotation, schema[name], subject=f"{prefix} {row_model.__name__} field {name!r}")
    return _return_model(fn, typing.get_type_hints(fn).get("return"), prefix)


def _return_model(fn: Any, returns: Any, prefix: str) -> type[pydantic.BaseModel]:
    if not (isinstance(returns, type) and issubclass(returns, pydantic.BaseModel)):
        raise RouteDefinitionError(
            f"{prefix} must have a return annotation that is a pydantic.BaseModel subclass; got {_show(returns)}",
            field="function",
        )
    return returns


def _accepting_field_names(model: type[pydantic.BaseModel]) -> type[pydantic.BaseModel]:
    """The model Ninja validates the body against (and publishes): `model`, accepting its field names.

    The body is `model_dump(mode="json")`, keyed by field name, and Ninja validates
    it again before sending it; a model with aliases would reject its own dump.
    """
    if not any(f.alias or f.validation_alias for f in model.model_fields.values()):
        return model
    by_name: dict[str, Any] = (
        {"validate_by_name": True, "validate_by_alias": True}
        if "validate_by_name" in pydantic.ConfigDict.__annotations__  # pydantic >= 2.11
        else {"populate_by_name": True}
    )
    namespace = {
        "model_config": {**model.model_config, **by_name},
        "__module__": model.__module__,
        "__qualname__": model.__qualname__,
    }
    return type(model.__name__, (model,), namespace)


# --- the signature rules -------------------------------------------------------------------------------------------


def check_route_function(
    fn: Any, schema: Mapping[str, ts.ColumnType], *, fn_name: str, decorator: str
) -> type[pydantic.BaseModel]:
    """Check a decorated function against the route's outputs; return its response model.

    Every parameter is keyword-only, annotated, named after an output and typed
    to accept that column's values; every output is a parameter; the return
    annotation is a pydantic model.
    """
    prefix = f"{decorator}: {fn_name!r}"
    if not callable(fn):
        raise RouteDefinitionError(f"{decorator}: {fn_name} is not a function", field="function")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # NameError for an undefined name, TypeError for a malformed annotation
        raise RouteDefinitionError(
            f"{prefix}: cannot resolve its type annotations: {type(exc).__name__}: {exc}", field="function"
        ) from exc
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError) as exc:  # a callable without an inspectable signature (a builtin, say)
        raise RouteDefinitionError(f"{prefix}: cannot read its signature: {exc}", field="function") from exc
    outputs = list(schema)
    for param in params.values():
        subject = f"{prefix} parameter {param.name!r}"
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            how = "**kwargs is not accepted: " if param.kind is inspect.Parameter.VAR_KEYWORD else ""
            raise RouteDefinitionError(
                f"{subject} must be keyword-only ({how}place one parameter per output after `*` in the signature)",
                field="function",
            )
        if param.name not in schema:
            raise RouteDefinitionError(f"{subject} is not in the defined outputs {outputs}", field="outputs")
        if param.name not in hints:
            raise RouteDefinitionError(f"{subject} has no type annotation", field="function")
        _check_annotation(hints[param.name], schema[param.name], subject=subject)
    missing = [name for name in outputs if name not in params]
    if missing:
        raise RouteDefinitionError(
            f"{prefix} is missing parameters for outputs {missing}; "
            "every defined output must appear as a keyword-only parameter",
            field="outputs",
        )
    return _return_model(fn, hints.get("return"), prefix)


def _check_annotation(annotation: Any, col_type: ts.ColumnType, *, subject: str) -> None:
    """The annotation must accept every value of the column: same type, nullable if the column is."""
    declared = ts.ColumnType.from_python_type(annotation)
    if declared is None:
        raise RouteDefinitionError(
            f"{subject}: cannot interpret annotation {_show(annotation)} as a Pixeltable type", field="function"
        )
    # media values reach the function as URL strings
    expected = ts.StringType(nullable=col_type.nullable) if col_type.is_media_type() else col_type
    if declared.is_supertype_of(expected):
        return
    hint = ""
    if declared.is_supertype_of(expected, ignore_nullable=True):
        hint = " (the column is nullable: annotate it as `T | None`)"
    elif col_type.is_media_type():
        hint = " (media columns are delivered as URL strings: annotate them as `str`)"
    raise RouteDefinitionError(
        f"{subject} has annotation {_show(annotation)} ({declared}), "
        f"which is incompatible with column type {expected}{hint}",
        field="function",
    )


def _model_columns(model: type[pydantic.BaseModel], *, fn_name: str, decorator: str) -> dict[str, ts.ColumnType]:
    """The export columns of a response model: its fields, typed as model_dump(mode='json') writes them."""
    columns: dict[str, ts.ColumnType] = {}
    for name, info in model.model_fields.items():
        col_type = ts.ColumnType.from_python_type(info.annotation, infer_pydantic_json=True)
        if col_type is None:
            raise RouteDefinitionError(
                f"{decorator}: {fn_name!r}: cannot interpret field {name!r} of {model.__name__} "
                f"(annotation {_show(info.annotation)}) as a Pixeltable type for export_sql",
                field="export_sql",
            )
        columns[name] = col_type
    return columns


def _show(annotation: Any) -> str:
    """An annotation as it is written in code: `str`, not `<class 'str'>`."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")
