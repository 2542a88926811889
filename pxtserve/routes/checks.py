"""The checks and models the route kinds share: names picked from what is allowed, uploads, outputs,
and the request and response models built from column types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pydantic
from pixeltable import type_system as ts

from pxtserve import schemas
from pxtserve.errors import RouteDefinitionError
from pxtserve.tables import ColumnInfo


def pick_names(
    requested: Sequence[str] | None, allowed: Mapping[str, Any], default: Sequence[str], *, what: str, field: str
) -> list[str]:
    """Validate a list of names against what is allowed; None means the default."""
    if requested is None:
        return list(default)
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


def check_not_computed(names: Sequence[str], columns: Mapping[str, ColumnInfo]) -> None:
    for name in names:
        if name in columns and columns[name].is_computed:
            raise RouteDefinitionError(f"{name!r} is a computed column and cannot be an input", field="inputs")


def request_model(kind: str, path: str, fields: dict[str, tuple[Any, Any]]) -> type[pydantic.BaseModel]:
    return schemas.build_model(schemas.model_name(kind, path, "Request"), fields, base=schemas.RequestSchema)


def column_fields(
    names: Sequence[str], columns: Mapping[str, ColumnInfo], *, form: bool = False, optional: bool = False
) -> dict[str, tuple[Any, Any]]:
    """Request fields for columns, typed and described from them (all optional with `optional`)."""
    default: dict[str, Any] = {"default": None} if optional else {}
    return {n: schemas.field(columns[n].col_type, description=columns[n].comment, form=form, **default) for n in names}


def row_model(
    kind: str, path: str, names: Sequence[str], columns: Mapping[str, ColumnInfo], suffix: str = "Response"
) -> type[pydantic.BaseModel]:
    """The response model of one row of the named columns."""
    types = {n: columns[n].col_type for n in names}
    return row_model_of_types(kind, path, types, suffix=suffix, descriptions={n: columns[n].comment for n in names})


def row_model_of_types(
    kind: str,
    path: str,
    types: Mapping[str, ts.ColumnType],
    *,
    suffix: str = "Response",
    descriptions: Mapping[str, str | None] | None = None,
) -> type[pydantic.BaseModel]:
    described = descriptions or {}
    fields = {n: schemas.field(t, description=described.get(n), response=True) for n, t in types.items()}
    return schemas.build_model(schemas.model_name(kind, path, suffix), fields, base=schemas.ResponseSchema)


@dataclass(frozen=True)
class RowContract:
    """The HTTP side of a route that takes one table row (insert, compute): resolved names and models."""

    inputs: list[str]
    uploads: list[str]
    outputs: list[str]
    request_model: type[pydantic.BaseModel]
    row_model: type[pydantic.BaseModel]
    input_types: dict[str, ts.ColumnType]
    output_types: dict[str, ts.ColumnType]

    @property
    def input_location(self) -> Literal["form", "body"]:
        return "form" if self.uploads else "body"

    @property
    def json_media_inputs(self) -> list[str]:
        """Media inputs sent as JSON strings (uploads are files the server wrote itself)."""
        return [n for n in self.inputs if self.input_types[n].is_media_type()]

    @property
    def optional_uploads(self) -> list[str]:
        return [n for n in self.uploads if self.input_types[n].nullable]

    def operation_fields(self) -> dict[str, Any]:
        """The RowsOperation fields this contract decides."""
        return {
            "request_model": self.request_model,
            "input_location": self.input_location,
            "upload_fields": self.uploads,
            "optional_uploads": self.optional_uploads,
            "media_outputs": self.media_outputs,
            "export_columns": self.output_types,
            "outputs": self.outputs,
            "output_types": self.output_types,
            "json_media_inputs": self.json_media_inputs,
        }

    @property
    def media_outputs(self) -> bool:
        return any(t.is_media_type() for t in self.output_types.values())


def row_contract(
    spec: Any, *, input_columns: Mapping[str, ColumnInfo], output_columns: Mapping[str, ColumnInfo]
) -> RowContract:
    """Check a row route's inputs, uploads and outputs; inputs default to the non-computed `input_columns`.

    `spec` is an insert or compute route's declaration (its inputs, uploadfile_inputs, outputs, ...).
    """
    kind, path, inputs, uploads, outputs = spec.kind, spec.path, spec.inputs, spec.uploadfile_inputs, spec.outputs
    return_fileresponse = spec.return_fileresponse
    check_not_computed([*(inputs or []), *(uploads or [])], input_columns)
    insertable = {n: c.col_type for n, c in input_columns.items() if not c.is_computed}
    upload_names = check_uploads(uploads, inputs, insertable, what="column")
    default_inputs = [n for n in insertable if n not in upload_names]
    input_names = pick_names(inputs, insertable, default_inputs, what="input column", field="inputs")
    output_types = {n: c.col_type for n, c in output_columns.items()}
    output_names = pick_names(outputs, output_types, list(output_types), what="output column", field="outputs")
    check_outputs(output_names, output_types, return_fileresponse=return_fileresponse)
    return RowContract(
        inputs=input_names,
        uploads=upload_names,
        outputs=output_names,
        request_model=request_model(kind, path, column_fields(input_names, input_columns, form=bool(upload_names))),
        row_model=row_model(kind, path, output_names, output_columns),
        input_types=insertable,
        output_types={n: output_types[n] for n in output_names},
    )


def check_required(required: Sequence[str], contract: RowContract, *, table: str, remedy: str = "") -> None:
    missing = [n for n in required if n not in contract.inputs and n not in contract.uploads]
    if missing:
        raise RouteDefinitionError(
            f"inputs must include the required column(s) {', '.join(missing)} of {table!r}{remedy}", field="inputs"
        )
