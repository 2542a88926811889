"""Query routes: run a @pxt.query / retrieval_udf with the request's arguments."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
from pixeltable import type_system as ts
from pixeltable.func import QueryTemplateFunction

from pxtserve import schemas
from pxtserve.errors import ApiError, RouteDefinitionError
from pxtserve.media import MediaUrls
from pxtserve.media_inputs import check_media_inputs
from pxtserve.routes.base import RouteOperation, check_flags, check_outputs, check_path, check_uploads, pick_names


@dataclass(kw_only=True)
class QueryOperation(RouteOperation):
    function: QueryTemplateFunction
    result_schema: dict[str, ts.ColumnType]
    defaults: dict[str, Any]
    one_row: bool
    json_media_inputs: list[str]

    def execute(self, inputs: dict[str, Any], media: MediaUrls) -> Any:
        check_media_inputs(inputs, self.json_media_inputs)
        args = {**self.defaults, **inputs}
        # A query function's template can only be run with bound arguments through
        # Query._collect (calling the function gives an expression, not rows);
        # media_as_urls yields file URLs instead of decoded images.
        rows = list(self.function.template_query._collect(args=args, media_as_urls=True))
        if self.one_row or self.return_fileresponse:
            if not rows:
                raise ApiError(404, "ROW_NOT_FOUND", "query returned no rows")
            if len(rows) > 1:
                raise ApiError(409, "TOO_MANY_ROWS", f"query returned {len(rows)} rows; expected exactly 1 for one_row")
        names = list(self.result_schema)
        if self.return_fileresponse:
            from pxtserve.routes.base import single_file

            return single_file(rows, names[0])
        rendered = [
            {n: media.url_for(r.get(n)) if self.result_schema[n].is_media_type() else r.get(n) for n in names}
            for r in rows
        ]
        if self.function.return_scalar:
            values = [r[names[0]] for r in rendered]
            return values[0] if self.one_row else values
        return rendered[0] if self.one_row else {"rows": rendered}


def resolve_query(query: Any) -> QueryTemplateFunction:
    """A query function, given itself or as a dotted path whose module is imported."""
    if isinstance(query, str):
        module_name, _, attr = query.rpartition(".")
        if not module_name:
            raise RouteDefinitionError(
                f"query must be a dotted path like 'myapp.queries.search', got {query!r}", field="query"
            )
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # any import-time failure is a configuration error to report, not a crash
            raise RouteDefinitionError(
                f"cannot import module {module_name!r} of query {query!r}: {type(exc).__name__}: {exc}", field="query"
            ) from exc
        if not hasattr(module, attr):
            raise RouteDefinitionError(f"module {module_name!r} has no attribute {attr!r}", field="query")
        query = getattr(module, attr)
    if not isinstance(query, QueryTemplateFunction):
        raise RouteDefinitionError(
            f"query must be a @pxt.query or retrieval_udf function, not {type(query).__name__}", field="query"
        )
    return query


def build_query(
    *,
    path: str,
    query: Any,
    inputs: Sequence[str] | None = None,
    uploadfile_inputs: Sequence[str] | None = None,
    one_row: bool = False,
    return_fileresponse: bool = False,
    background: bool = False,
    method: Literal["get", "post"] = "post",
) -> QueryOperation:
    check_path(path)
    check_flags(return_fileresponse=return_fileresponse, background=background, export_sql=None)
    if method not in ("get", "post"):
        raise RouteDefinitionError(f"method must be 'get' or 'post', got {method!r}", field="method")
    fn = resolve_query(query)
    params = dict(fn.signature.parameters)
    param_types = {name: p.col_type for name, p in params.items()}
    uploads = check_uploads(uploadfile_inputs, inputs, param_types, what="parameter")
    if uploads and method == "get":
        raise RouteDefinitionError(
            "a GET query route cannot take file uploads; use method = 'post'", field="uploadfile_inputs"
        )
    input_names = pick_names(
        inputs, param_types, [n for n in param_types if n not in uploads], what="query parameter", field="inputs"
    )
    accepted = set(input_names) | set(uploads)
    missing = [n for n, p in params.items() if n not in accepted and not p.has_default()]
    if missing:
        raise RouteDefinitionError(
            f"inputs must include the query parameter(s) without a default: {', '.join(missing)}", field="inputs"
        )
    defaults = {n: p.default.val for n, p in params.items() if p.has_default() and n not in accepted}
    result_schema = dict(fn.template_query.schema)
    check_outputs(list(result_schema), result_schema, return_fileresponse=return_fileresponse)

    request_fields = {}
    for name in input_names:
        p = params[name]
        default = p.default.val if p.has_default() else ...
        request_fields[name] = schemas.field(p.col_type, default=default, form=bool(uploads))
    request_model = schemas.build_model(
        schemas.model_name("query", path, "Request"), request_fields, base=schemas.RequestSchema
    )
    row_model = schemas.build_model(
        schemas.model_name("query", path, "Row"),
        {n: schemas.field(t, response=True) for n, t in result_schema.items()},
        base=schemas.ResponseSchema,
    )
    response_model: Any
    if return_fileresponse:
        response_model = Path
    elif fn.return_scalar:
        scalar = schemas.python_type(next(iter(result_schema.values())))
        response_model = scalar if one_row else list[scalar]  # type: ignore[valid-type]
    elif one_row:
        response_model = row_model
    else:
        response_model = pydantic.create_model(
            schemas.model_name("query", path, "Response"),
            __base__=schemas.ResponseSchema,
            rows=(list[row_model], pydantic.Field(description="Query result rows")),  # type: ignore[valid-type]
        )
    return QueryOperation(
        kind="query",
        method=method.upper(),
        path=path,
        request_model=request_model,
        input_location="form" if uploads else ("query" if method == "get" else "body"),
        response_model=response_model,
        upload_fields=uploads,
        optional_uploads=[n for n in uploads if param_types[n].nullable or params[n].has_default()],
        background=background,
        return_fileresponse=return_fileresponse,
        summary=f"Run query {fn.name}",
        details={"query": fn.self_path or fn.name, "one_row": one_row, "outputs": list(result_schema)},
        function=fn,
        result_schema=result_schema,
        defaults=defaults,
        one_row=one_row,
        media_outputs=any(t.is_media_type() for t in result_schema.values()),
        json_media_inputs=[n for n in input_names if param_types[n].is_media_type()],
    )
