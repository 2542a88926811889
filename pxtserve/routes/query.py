"""Query routes: run a @pxt.query / retrieval_udf with the request's arguments."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pydantic
from pixeltable.func import QueryTemplateFunction
from pydantic import Field

from pxtserve import schemas
from pxtserve.errors import RouteDefinitionError
from pxtserve.media import MediaUrls
from pxtserve.media_inputs import check_media_inputs
from pxtserve.pxt_internals import PreparedRead, run_query_page
from pxtserve.routes.checks import check_outputs, check_uploads, pick_names, request_model, row_model_of_types
from pxtserve.routes.operation import RowsOperation, Shape
from pxtserve.routes.paging import Paging
from pxtserve.routes.spec import Inputs, PageSize, ReturnFile, RouteSpec, UploadInputs


class QueryRoute(RouteSpec):
    """`method` `path` runs a @pxt.query function (or a dotted path to one) with the request's arguments."""

    kind: ClassVar[str] = "query"
    type: Literal["query"] = "query"
    query: Any = Field(description="a @pxt.query function, or its dotted path (its module is imported)")
    inputs: Inputs = None
    uploadfile_inputs: UploadInputs = None
    one_row: bool = Field(False, description="answer with the single row (404 on none, 409 on several)")
    return_fileresponse: ReturnFile = False
    method: Literal["get", "post"] = Field("post", description="get: arguments in the query string")
    page_size: PageSize = None

    def check_options(self) -> None:
        if self.return_fileresponse and self.background:
            raise RouteDefinitionError(
                "return_fileresponse and background are mutually exclusive", field="return_fileresponse"
            )
        if self.page_size is not None and (self.one_row or self.return_fileresponse):
            raise RouteDefinitionError(
                "page_size pages a multi-row answer: not with one_row or a file", field="page_size"
            )

    def build_operation(self) -> QueryOperation:
        fn = resolve_query(self.query)
        params = dict(fn.signature.parameters)
        param_types = {name: p.col_type for name, p in params.items()}
        uploads = check_uploads(self.uploadfile_inputs, self.inputs, param_types, what="parameter")
        if uploads and self.method == "get":
            raise RouteDefinitionError(
                "a GET query route cannot take file uploads; use method = 'post'", field="uploadfile_inputs"
            )
        default_inputs = [n for n in param_types if n not in uploads]
        input_names = pick_names(self.inputs, param_types, default_inputs, what="query parameter", field="inputs")
        accepted = set(input_names) | set(uploads)
        missing = [n for n, p in params.items() if n not in accepted and not p.has_default()]
        if missing:
            raise RouteDefinitionError(
                f"inputs must include the query parameter(s) without a default: {', '.join(missing)}", field="inputs"
            )
        result_types = dict(fn.template_query.schema)
        check_outputs(list(result_types), result_types, return_fileresponse=self.return_fileresponse)
        fields = {
            name: schemas.field(
                params[name].col_type,
                default=params[name].default.val if params[name].has_default() else ...,
                form=bool(uploads),
            )
            for name in input_names
        }
        one = self.one_row or self.return_fileresponse
        paging = None
        if self.page_size is not None:
            paging = Paging.of(
                self.page_size, input_names, route=f"{self.method} {self.path} {fn.self_path or fn.name}"
            )
        name = schemas.model_name(self.kind, self.path, "Request")
        return QueryOperation(
            spec=self,
            method=self.method.upper(),
            request_model=paging.request_model(name, fields) if paging else request_model(self.kind, self.path, fields),
            input_location="form" if uploads else ("query" if self.method == "get" else "body"),
            response_model=None if self.return_fileresponse else self._response_model(fn, result_types),
            upload_fields=uploads,
            optional_uploads=[n for n in uploads if param_types[n].nullable or params[n].has_default()],
            summary=f"Run query {fn.name}",
            media_outputs=any(t.is_media_type() for t in result_types.values()),
            details={
                "query": fn.self_path or fn.name,
                "one_row": self.one_row,
                "outputs": list(result_types),
                **({"page_size": self.page_size} if paging else {}),
            },
            outputs=list(result_types),
            output_types=result_types,
            shape=Shape.ONE if one else Shape.ROWS,
            no_row_message="query returned no rows",
            function=fn,
            prepared=PreparedRead(fn),
            defaults={n: p.default.val for n, p in params.items() if p.has_default() and n not in accepted},
            scalar=fn.return_scalar,
            json_media_inputs=[n for n in input_names if param_types[n].is_media_type()],
            paging=paging,
        )

    def _response_model(self, fn: QueryTemplateFunction, result_types: dict[str, Any]) -> Any:
        if fn.return_scalar:
            scalar = schemas.python_type(next(iter(result_types.values())))
            if self.page_size is not None:
                return Paging.response_model(schemas.model_name(self.kind, self.path, "Page"), scalar)
            return scalar if self.one_row else list[scalar]  # type: ignore[valid-type]
        row = row_model_of_types(self.kind, self.path, result_types, suffix="Row")
        if self.one_row:
            return row
        if self.page_size is not None:
            return Paging.response_model(schemas.model_name(self.kind, self.path, "Page"), row)
        return pydantic.create_model(
            schemas.model_name(self.kind, self.path, "Response"),
            __base__=schemas.ResponseSchema,
            rows=(list[row], pydantic.Field(description="Query result rows")),  # type: ignore[valid-type]
        )


@dataclass(kw_only=True)
class QueryOperation(RowsOperation):
    function: QueryTemplateFunction
    # what a call of the template needs that does not change between calls (pxt_internals.PreparedRead)
    prepared: PreparedRead
    defaults: dict[str, Any]
    # a query that selects one expression answers with its values, not with rows
    scalar: bool

    # page_size (pxtserve.routes.paging)
    paging: Paging | None = None

    @property
    def inline_reads(self) -> bool:
        # a media input given as a URL may be fetched (MEDIA_FETCH_URLS): not on the loop's thread
        return not self.json_media_inputs

    def fetch(self, inputs: dict[str, Any]) -> Sequence[Mapping[str, Any]]:
        return self.prepared.rows({**self.defaults, **inputs})

    def execute(self, inputs: dict[str, Any], media: MediaUrls) -> Any:
        if self.paging is None:
            return super().execute(inputs, media)
        limit, cursor = inputs.pop("limit"), inputs.pop("cursor")
        offset = self.paging.offset_of(cursor, inputs)  # checked when the request was validated
        check_media_inputs(inputs, self.json_media_inputs, self.upload_fields)
        # one row more than the page: whether there is a next page, without counting the whole result
        rows = list(run_query_page(self.function, {**self.defaults, **inputs}, offset=offset, count=limit + 1))
        body = self.answer(rows[:limit], media)
        more = len(rows) > limit
        return {
            "rows": body if self.scalar else body["rows"],
            "next_cursor": self.paging.cursor(offset + limit, inputs) if more else None,
        }

    def shape_body(self, rendered: list[dict[str, Any]]) -> Any:
        if not self.scalar:
            return super().shape_body(rendered)
        values = [row[self.outputs[0]] for row in rendered]
        return values[0] if self.shape is Shape.ONE else values


def resolve_query(query: Any) -> QueryTemplateFunction:
    """A query function, given itself or as a dotted path whose module is imported."""
    written = repr(query)  # what the declaration said, for the error: the dotted path, or the object passed
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
        kind = type(query).__name__
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        raise RouteDefinitionError(
            f"query {written} is {article} {kind}, not a @pxt.query or retrieval_udf function", field="query"
        )
    return query
