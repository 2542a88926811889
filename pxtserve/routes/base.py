"""What every route kind shares: the operation interface and the checks on
inputs and outputs that insert, update and query routes all make."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pixeltable import type_system as ts

from pxtserve.errors import ApiError, RouteDefinitionError
from pxtserve.media import MediaUrls, local_file_for

if TYPE_CHECKING:
    from ninja import Schema

    from pxtserve.export import SqlExport, SqlExporter

InputLocation = Literal["body", "query", "form"]


@dataclass(kw_only=True)
class RouteOperation:
    """One served endpoint: its HTTP contract and the Pixeltable call behind it.

    `execute` runs on the Pixeltable thread pool (or in a job worker) and
    returns the response body, or a Path for a file response.
    """

    kind: str
    method: str
    path: str
    request_model: type[Schema] | None
    input_location: InputLocation
    response_model: Any
    upload_fields: list[str] = field(default_factory=list)
    # uploads of nullable columns/parameters, which a request may leave out
    optional_uploads: list[str] = field(default_factory=list)
    background: bool = False
    return_fileresponse: bool = False
    exporter: SqlExporter | None = None
    export_spec: SqlExport | None = None
    summary: str = ""
    # whether a response can hold media URLs: only then does a request reverse the media view's URL
    media_outputs: bool = False
    # the Ninja auth the route was registered with (NOT_SET: the router's); job polls check it too
    auth: Any = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        """Whether the route writes its table (through the table's writer thread, pxtserve/writes.py)."""
        return self.kind in ("insert", "update", "delete")

    @property
    def display_name(self) -> str:
        return f"{self.method} {self.path}"

    def execute(self, inputs: dict[str, Any], media: MediaUrls) -> Any:
        raise NotImplementedError

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
            "return_fileresponse": self.return_fileresponse,
            "export_sql": describe_export(self.export_spec),
            **self.details,
        }


def describe_export(spec: SqlExport | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    from pxtserve.export import redact_url

    return {**spec.model_dump(), "db_connect": redact_url(spec.db_connect)}


def check_flags(*, return_fileresponse: bool, background: bool, export_sql: Any) -> None:
    if return_fileresponse and background:
        raise RouteDefinitionError(
            "return_fileresponse and background are mutually exclusive", field="return_fileresponse"
        )
    if return_fileresponse and export_sql is not None:
        raise RouteDefinitionError("export_sql and return_fileresponse are mutually exclusive", field="export_sql")


def check_path(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise RouteDefinitionError(f"path must start with '/', got {path!r}", field="path")
    return path


def pick_names(
    requested: Sequence[str] | None, allowed: Mapping[str, Any], default: Sequence[str], *, what: str, field: str
) -> list[str]:
    """Validate a list of names against what is allowed; None means the default."""
    if requested is None:
        return list(default)
    if isinstance(requested, str):
        raise RouteDefinitionError(f"{field} must be a list of names, got the string {requested!r}", field=field)
    names: list[str] = []
    for name in requested:
        if name not in allowed:
            choices = ", ".join(allowed) or "none"
            raise RouteDefinitionError(f"unknown {what} {name!r} (expected one of: {choices})", field=field)
        if name in names:
            raise RouteDefinitionError(f"{what} {name!r} is listed twice", field=field)
        names.append(name)
    return names


def check_uploads(
    uploads: Sequence[str] | None, inputs: Sequence[str] | None, schema: Mapping[str, ts.ColumnType], *, what: str
) -> list[str]:
    names = pick_names(uploads, schema, [], what=what, field="uploadfile_inputs")
    for name in names:
        if not schema[name].is_media_type():
            raise RouteDefinitionError(
                f"uploadfile input {what} {name!r} is not media-typed ({schema[name]}); "
                "only image, video, audio and document columns can be uploaded",
                field="uploadfile_inputs",
            )
        if inputs is not None and name in inputs:
            raise RouteDefinitionError(f"{name!r} appears in both inputs and uploadfile_inputs", field="inputs")
    return names


def check_outputs(outputs: Sequence[str], schema: Mapping[str, ts.ColumnType], *, return_fileresponse: bool) -> None:
    for name in outputs:
        col_type = schema[name]
        if col_type.is_array_type() or col_type.is_binary_type():
            raise RouteDefinitionError(
                f"output {name!r} has type {col_type}, which cannot be served as JSON", field="outputs"
            )
    if return_fileresponse:
        media = [n for n in outputs if schema[n].is_media_type()]
        if len(outputs) != 1 or len(media) != 1:
            raise RouteDefinitionError(
                f"return_fileresponse requires exactly one output and it must be media-typed; outputs are {list(outputs)}",
                field="return_fileresponse",
            )


def render_row(
    row: Mapping[str, Any], names: Sequence[str], schema: Mapping[str, ts.ColumnType], media: MediaUrls
) -> dict[str, Any]:
    """The response body for one row: the named columns, media as URLs."""
    return {name: media.url_for(row.get(name)) if schema[name].is_media_type() else row.get(name) for name in names}


def single_file(rows: Sequence[Mapping[str, Any]], name: str) -> Path:
    """The local file of the single media value a file response returns."""
    value = rows[0].get(name)
    if value is None:
        raise ApiError(404, "NULL_MEDIA", f"{name!r} is null: there is no file to return")
    path = local_file_for(value)
    if path is None:
        raise ApiError(502, "MEDIA_NOT_LOCAL", f"the file of {name!r} is not available locally: {value}")
    return path


def build_exporter(spec: SqlExport | None, columns: dict[str, ts.ColumnType], route: str) -> SqlExporter | None:
    """Validate an export target against the live database once, at registration."""
    if spec is None:
        return None
    from pxtserve.export import ExportConfigError, SqlExporter

    try:
        return SqlExporter(spec, columns, route=route)
    except ExportConfigError as exc:
        raise RouteDefinitionError(str(exc), field="export_sql") from exc


def export(operation: RouteOperation, body: dict[str, Any]) -> None:
    """Write the response row to the export target; a failure is a 500 naming it (Pixeltable already committed)."""
    if operation.exporter is None:
        return
    from pxtserve.export import ExportWriteError

    try:
        operation.exporter.export_row(body)
    except ExportWriteError as exc:
        raise ApiError(500, "EXPORT_FAILED", str(exc)) from exc
