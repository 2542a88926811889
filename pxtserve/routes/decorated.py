"""Decorator routes: an insert or update whose response body is shaped by a user function.

`@router.insert_route(...)` / `@router.update_route(...)` run the same Pixeltable
write as the plain routes, then call the decorated function with the rendered
output columns as keyword arguments; the pydantic model it returns is the body.
The function's signature is checked against the outputs when it is decorated,
so a mismatch stops the site at start-up instead of failing the first request.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pixeltable as pxt
import pydantic
from pixeltable import type_system as ts

from pxtserve.errors import ApiError, RouteDefinitionError
from pxtserve.media import MediaUrls
from pxtserve.routes.base import RouteOperation, build_exporter, export
from pxtserve.routes.insert import InsertOperation, build_insert
from pxtserve.routes.update import UpdateOperation, build_update

if TYPE_CHECKING:
    from pxtserve.export import SqlExport

_logger = logging.getLogger("pxtserve.routes")

RouteFunction = Callable[..., pydantic.BaseModel]
# what insert_route()/update_route() return before the function is known: the function -> its operation
OperationFactory = Callable[[RouteFunction], "DecoratedOperation"]


@dataclass(kw_only=True)
class DecoratedOperation(RouteOperation):
    """A plain insert/update operation whose rendered row goes through a user function."""

    write: InsertOperation | UpdateOperation
    function: RouteFunction
    function_name: str
    result_model: type[pydantic.BaseModel]  # the function's return annotation

    def execute(self, inputs: dict[str, Any], media: MediaUrls) -> Any:
        columns = self.write.execute(inputs, media)  # the output columns, media already as URLs
        try:
            result = self.function(**columns)
        except ApiError:
            raise
        except Exception as exc:  # a bug in the user's function: log the traceback, answer without its details
            _logger.exception("route %s: %s raised", self.display_name, self.function_name)
            raise ApiError(
                500,
                "ROUTE_FUNCTION_FAILED",
                f"route function {self.function_name!r} raised {type(exc).__name__}; see the server log",
            ) from exc
        if not isinstance(result, self.result_model):
            raise ApiError(
                500,
                "INVALID_ROUTE_RESULT",
                f"route function {self.function_name!r} returned {type(result).__name__}, "
                f"not its declared return type {self.result_model.__name__}",
            )
        body = result.model_dump(mode="json")
        export(self, body)
        return body


def decorated_insert(
    table: pxt.Table | str,
    *,
    path: str,
    inputs: Sequence[str] | None = None,
    uploadfile_inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    export_sql: SqlExport | None = None,
    background: bool = False,
) -> OperationFactory:
    """Check the route arguments now; the returned factory checks the function and builds the operation."""
    write = build_insert(
        table,
        path=path,
        inputs=inputs,
        uploadfile_inputs=uploadfile_inputs,
        outputs=outputs,
        background=background,
    )
    return lambda fn: _decorate(write, fn, export_sql=export_sql, decorator="insert_route()")


def decorated_update(
    table: pxt.Table | str,
    *,
    path: str,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    export_sql: SqlExport | None = None,
    background: bool = False,
) -> OperationFactory:
    """Check the route arguments now; the returned factory checks the function and builds the operation."""
    write = build_update(table, path=path, inputs=inputs, outputs=outputs, background=background)
    return lambda fn: _decorate(write, fn, export_sql=export_sql, decorator="update_route()")


def _decorate(
    write: InsertOperation | UpdateOperation, fn: Any, *, export_sql: SqlExport | None, decorator: str
) -> DecoratedOperation:
    schema = {name: write.info.columns[name].col_type for name in write.outputs}
    fn_name = getattr(fn, "__name__", None) or repr(fn)
    result_model = check_route_function(fn, schema, fn_name=fn_name, decorator=decorator)
    export_columns = _model_columns(result_model, fn_name=fn_name, decorator=decorator) if export_sql else {}
    # the HTTP contract is the plain operation's (every RouteOperation field), except for the response
    contract = {f.name: getattr(write, f.name) for f in dataclasses.fields(RouteOperation)}
    contract.update(
        response_model=_accepting_field_names(result_model),
        exporter=build_exporter(export_sql, export_columns, write.display_name),
        export_spec=export_sql,
        details={**write.details, "function": fn_name, "response_model": result_model.__name__},
    )
    return DecoratedOperation(**contract, write=write, function=fn, function_name=fn_name, result_model=result_model)


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
    returns = hints.get("return")
    if not (isinstance(returns, type) and issubclass(returns, pydantic.BaseModel)):
        raise RouteDefinitionError(
            f"{prefix} must have a return annotation that is a pydantic.BaseModel subclass; got {_show(returns)}",
            field="function",
        )
    return returns


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
