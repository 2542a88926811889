"""A built route: its HTTP contract, and how it runs.

`Operation.execute` runs on the Pixeltable thread pool (or in a job worker) and
returns the response body, or a Path for a file response. Row routes (insert,
update, compute, query) share one tail in `RowsOperation`: fetch the rows, check
their count against the route's `Shape`, render them (media as URLs), hand them to
the response function if there is one, export them, and shape the body.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pixeltable as pxt
from ninja.constants import NOT_SET
from pixeltable import type_system as ts

from pxtserve.errors import ApiError
from pxtserve.export import describe_export
from pxtserve.media import MediaUrls, local_file_for
from pxtserve.media_inputs import check_media_inputs
from pxtserve.routes.batch import in_row

if TYPE_CHECKING:
    from pydantic import BaseModel

    from pxtserve.export import SqlExporter
    from pxtserve.routes.spec import RouteSpec

InputLocation = Literal["body", "query", "form"]


@dataclass(kw_only=True)
class Operation:
    """One served endpoint: the declaration it came from, its HTTP contract and the Pixeltable call behind it."""

    spec: RouteSpec
    method: str
    request_model: type[BaseModel] | None
    input_location: InputLocation
    # None for a file response
    response_model: Any
    upload_fields: list[str] = field(default_factory=list)
    # uploads of nullable columns/parameters, which a request may leave out
    optional_uploads: list[str] = field(default_factory=list)
    summary: str = ""
    # whether the route writes its table: its thread then waits for the table's writer (pxtserve/writes.py)
    writes: bool = False
    # update routes leave out the optional fields a client did not send, instead of nulling them
    partial_inputs: bool = False
    # whether a response can hold media URLs: only then does a request reverse the media view's URL
    media_outputs: bool = False
    # the columns an export_sql target receives, and the exporter built for them at registration
    export_columns: dict[str, ts.ColumnType] = field(default_factory=dict)
    exporter: SqlExporter | None = None
    # what `serve --dry-run` shows beyond the declaration (resolved names, the table's path)
    details: dict[str, Any] = field(default_factory=dict)
    # the Ninja auth the route was registered with (NOT_SET: the router's); job polls check it too
    auth: Any = NOT_SET
    # whether its media URLs are signed (its router's media_protected, set at registration; pxtserve.media_signing)
    signs_media: Callable[[], bool] = lambda: False

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def path(self) -> str:
        return self.spec.path

    @property
    def background(self) -> bool:
        return self.spec.background

    @property
    def returns_file(self) -> bool:
        return self.response_model is None

    @property
    def changes_data(self) -> bool:
        """Whether a request changes data (its table, or an export target): such routes honour Idempotency-Key."""
        return self.writes or self.exporter is not None

    @property
    def display_name(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def inline_reads(self) -> bool:
        """Whether a call may run on the event loop's thread when nothing else is in flight (pxtserve.inline_reads):
        a read that neither writes nor reaches outside Pixeltable."""
        return False

    def inputs_from(self, payload: BaseModel | None) -> dict[str, Any]:
        """The validated request fields as `execute` takes them."""
        if payload is None:
            return {}
        return payload.model_dump(exclude_unset=self.partial_inputs)

    def inputs_from_stored(self, stored: dict[str, Any]) -> dict[str, Any]:
        """The inputs of a background job's stored request (validated again, as the request was)."""
        model = self.request_model
        if model is None or not model.model_fields:
            return {}
        return self.inputs_from(model.model_validate(stored))

    def execute(self, inputs: dict[str, Any], media: MediaUrls) -> Any:
        raise NotImplementedError

    def export(self, bodies: Sequence[dict[str, Any]]) -> None:
        """Write response rows to the export target (a failure is an ExportWriteError, a 500 naming it)."""
        if self.exporter is not None:
            for body in bodies:
                self.exporter.export_row(body)

    def describe(self) -> dict[str, Any]:
        """What `serve --dry-run` prints about this route."""
        fields = list(self.request_model.model_fields) if self.request_model is not None else []
        return {
            "type": self.kind,
            "method": self.method,
            "path": self.path,
            "inputs": fields + self.upload_fields,
            "uploadfile_inputs": self.upload_fields,
            "background": self.background,
            "return_fileresponse": self.returns_file,
            "export_sql": describe_export(getattr(self.spec, "export_sql", None)),
            **self.details,
        }


class Shape(enum.Enum):
    """How many rows a row route answers with, and in what body."""

    ONE = "one"  # exactly one: the row as an object (404 on none, 409 on several)
    OPTIONAL = "optional"  # at most one: the row, or null
    LIST = "list"  # a JSON array of rows
    ROWS = "rows"  # {"rows": [...]}


# a response function's view of the rendered rows: it returns the body
RowsFunction = Callable[[list[dict[str, Any]]], dict[str, Any]]


@dataclass(kw_only=True)
class RowsOperation(Operation):
    """An operation whose Pixeltable call yields rows, of which the response shows `outputs`."""

    outputs: list[str]
    output_types: dict[str, ts.ColumnType]
    shape: Shape
    # the 404 message when a ONE route gets no row
    no_row_message: str = "no row"
    # media inputs sent as JSON strings, checked before the call (uploads are files the server wrote itself)
    json_media_inputs: list[str] = field(default_factory=list)
    # set by a decorator route (pxtserve.routes.functions): the rendered rows -> the body
    response_function: RowsFunction | None = None
    # `batch = true` (pxtserve.routes.batch): the inputs are {"rows": [...]}, the body {"rows": [answer, ...]}
    batch: bool = False

    @functools.cached_property
    def media_output_names(self) -> frozenset[str]:
        """The outputs whose values are media (rendered as URLs): asked of Pixeltable's types once, not per value."""
        return frozenset(name for name in self.outputs if self.output_types[name].is_media_type())

    def fetch(self, inputs: dict[str, Any]) -> Sequence[Mapping[str, Any]]:
        raise NotImplementedError

    def fetch_batch(self, rows: list[dict[str, Any]]) -> list[Sequence[Mapping[str, Any]]]:
        """What `fetch` gives for each of a batch's rows, in order (insert routes: in one call)."""
        fetched = []
        for index, row in enumerate(rows):
            try:
                fetched.append(self.fetch(row))
            except (ApiError, pxt.Error) as exc:
                raise in_row(index, exc) from exc
        return fetched

    def execute(self, inputs: dict[str, Any], media: MediaUrls) -> Any:
        if self.batch:
            for index, row in enumerate(inputs["rows"]):
                try:
                    check_media_inputs(row, self.json_media_inputs, self.upload_fields)
                except ApiError as exc:
                    raise in_row(index, exc) from exc
            # every row is fetched (and an insert's stored) before any is answered or exported
            return {"rows": [self.answer(rows, media) for rows in self.fetch_batch(inputs["rows"])]}
        check_media_inputs(inputs, self.json_media_inputs, self.upload_fields)
        return self.answer(self.fetch(inputs), media)

    def answer(self, rows: Sequence[Mapping[str, Any]], media: MediaUrls) -> Any:
        """The body for one request's fetched rows (and their export)."""
        if self.shape is Shape.ONE:
            if not rows:
                raise ApiError(404, "ROW_NOT_FOUND", self.no_row_message)
            if len(rows) > 1:
                raise ApiError(409, "TOO_MANY_ROWS", f"got {len(rows)} rows; expected exactly 1")
        if self.returns_file:
            return single_file(rows, self.outputs[0])
        rendered = [render_row(row, self.outputs, self.media_output_names, media) for row in rows]
        if self.response_function is not None:
            body = self.response_function(rendered)
            self.export([body])
            return body
        self.export(rendered)
        return self.shape_body(rendered)

    def shape_body(self, rendered: list[dict[str, Any]]) -> Any:
        if self.shape is Shape.ONE:
            return rendered[0]
        if self.shape is Shape.OPTIONAL:
            return rendered[0] if rendered else None
        if self.shape is Shape.LIST:
            return rendered
        return {"rows": rendered}


def render_row(
    row: Mapping[str, Any], names: Sequence[str], media_names: frozenset[str], media: MediaUrls
) -> dict[str, Any]:
    """The response body for one row: the named columns, those in `media_names` as URLs."""
    if not media_names:
        return {name: row.get(name) for name in names}
    return {name: media.url_for(row.get(name)) if name in media_names else row.get(name) for name in names}


def single_file(rows: Sequence[Mapping[str, Any]], name: str) -> Path:
    """The local file of the single media value a file response returns."""
    value = rows[0].get(name)
    if value is None:
        raise ApiError(404, "NULL_MEDIA", f"{name!r} is null: there is no file to return")
    path = local_file_for(value)
    if path is None:
        raise ApiError(502, "MEDIA_NOT_LOCAL", f"the file of {name!r} is not available locally: {value}")
    return path
