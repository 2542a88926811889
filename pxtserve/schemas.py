"""Pydantic request and response models built from Pixeltable column types.

Ninja validates requests against these and publishes them in the OpenAPI
document, so every route shows typed fields and a bad request is a 422 that
names the field.
"""

from __future__ import annotations

from typing import Any, Optional

import pydantic
from ninja import Schema
from pixeltable import type_system as ts

# json-schema contentMediaType of a media URL, so OpenAPI tools can render a link
_MEDIA_CONTENT_TYPES: dict[ts.ColumnType.Type, str] = {
    ts.ColumnType.Type.IMAGE: "image/*",
    ts.ColumnType.Type.VIDEO: "video/*",
    ts.ColumnType.Type.AUDIO: "audio/*",
    ts.ColumnType.Type.DOCUMENT: "application/octet-stream",
}


class RequestSchema(Schema):
    # a misspelt field is an error, not silently dropped input
    model_config = pydantic.ConfigDict(extra="forbid")


class ResponseSchema(Schema):
    pass


class ErrorDetail(Schema):
    error_code: str
    message: str
    retryable: bool | None = None


class ErrorResponse(Schema):
    detail: ErrorDetail


class DeleteResponse(Schema):
    num_rows: int


def python_type(col_type: ts.ColumnType) -> Any:
    """The Python type of a column's values in JSON: media columns are URL (or path) strings."""
    if col_type.is_media_type():
        return Optional[str] if col_type.nullable else str
    return col_type.to_pydantic_type()


def field(
    col_type: ts.ColumnType,
    *,
    description: str | None = None,
    default: Any = ...,
    response: bool = False,
    form: bool = False,
) -> tuple[Any, Any]:
    """A (type, FieldInfo) pair for pydantic.create_model.

    In a multipart form every value is text: a JSON column's field is then parsed as JSON.
    """
    extra: dict[str, Any] = {}
    if col_type.is_media_type() and response:
        extra = {"format": "uri"}
        if col_type._type in _MEDIA_CONTENT_TYPES:  # no public accessor for a type's kind
            extra["contentMediaType"] = _MEDIA_CONTENT_TYPES[col_type._type]
    if default is ... and col_type.nullable:
        default = None
    py_type = python_type(col_type)
    if form and col_type.is_json_type():
        py_type = Optional[pydantic.Json[Any]] if col_type.nullable else pydantic.Json[Any]
    return py_type, pydantic.Field(default, description=description, json_schema_extra=extra or None)


def build_model(name: str, fields: dict[str, tuple[Any, Any]], *, base: type[Schema]) -> type[Schema]:
    return pydantic.create_model(name, __base__=base, **fields)  # type: ignore[call-overload, no-any-return]


def model_name(kind: str, path: str, suffix: str) -> str:
    """A readable, unique-per-route model name, e.g. ('update', '/items/update', 'Request') -> UpdateItemsUpdateRequest."""
    parts = [p for p in path.replace("-", "/").replace("_", "/").replace(".", "/").split("/") if p]
    return kind.capitalize() + "".join(p[:1].upper() + p[1:] for p in parts if p.isidentifier()) + suffix
