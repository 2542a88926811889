"""Pydantic request and response models built from Pixeltable column types.

Ninja validates requests against these and publishes them in the OpenAPI
document, so every route shows typed fields and a bad request is a 422 that
names the field.

They are plain pydantic models, not `ninja.Schema`: Schema's wrap validator
(which lets it read Django model instances) wraps every input in a getter and
costs time on every request on these flat dicts, for nothing we use.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

import pydantic
from pixeltable import type_system as ts

from pxtserve.pxt_internals import media_kind

# json-schema contentMediaType of a media URL, so OpenAPI tools can render a link
_MEDIA_CONTENT_TYPES: dict[ts.ColumnType.Type, str] = {
    ts.ColumnType.Type.IMAGE: "image/*",
    ts.ColumnType.Type.VIDEO: "video/*",
    ts.ColumnType.Type.AUDIO: "audio/*",
    ts.ColumnType.Type.DOCUMENT: "application/octet-stream",
}


class RequestSchema(pydantic.BaseModel):
    # a misspelt field is an error, not silently dropped input
    model_config = pydantic.ConfigDict(extra="forbid")


class ResponseSchema(pydantic.BaseModel):
    pass


class ErrorDetail(pydantic.BaseModel):
    error_code: str
    message: str
    retryable: bool | None = None


class ErrorResponse(pydantic.BaseModel):
    detail: ErrorDetail


class ValidationErrorItem(pydantic.BaseModel):
    type: str
    loc: list[str | int]
    msg: str


class ValidationErrorResponse(pydantic.BaseModel):
    """Ninja's 422 for a request that does not validate: one item per bad field."""

    detail: list[ValidationErrorItem]


class MessageResponse(pydantic.BaseModel):
    """Ninja's own plain errors, e.g. the 400 for a body that is not JSON."""

    detail: str


class DeleteResponse(pydantic.BaseModel):
    num_rows: int


# What the store can hold, checked on requests so that a value it would reject is a 422
# naming the field, not a database error (a 500): Pixeltable's ints are 64-bit, PostgreSQL
# text and jsonb hold no NUL character, JSON has no NaN/Infinity (nor does a response body).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# JSON values nested deeper than this are refused (Pixeltable walks them recursively)
MAX_JSON_DEPTH = 100

# a str holding a lone surrogate (JSON allows "\ud800") fails this pattern too: it is not valid Unicode
_TEXT = pydantic.Field(pattern=r"^[^\x00]*$")


def _not_a_bool(value: Any) -> Any:
    # pydantic's lax mode (needed for query strings and form fields, which are text) takes
    # true/false for 1/0; a boolean sent for a number is a client bug to report, not to store
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")  # noqa: TRY004 - pydantic reports only ValueError
    return value


_NUMBER = pydantic.BeforeValidator(_not_a_bool)
_REQUEST_TYPES: dict[type, Any] = {
    int: Annotated[int, _NUMBER, pydantic.Field(ge=INT64_MIN, le=INT64_MAX)],
    float: Annotated[float, _NUMBER, pydantic.Field(allow_inf_nan=False)],
    str: Annotated[str, _TEXT],
}


def _check_json(value: Any) -> Any:
    """A JSON input the store can hold: no NUL or lone surrogate in strings or keys, finite numbers, bounded depth."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            for key in item if isinstance(item, dict) else ():
                stack.append((key, depth))
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
        elif isinstance(item, str):
            if "\x00" in item:
                raise ValueError("JSON strings must not contain NUL (\\u0000)")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("JSON strings must be valid Unicode (no lone surrogates)") from None
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("JSON numbers must be finite (no NaN or Infinity)")
    return value


def python_type(col_type: ts.ColumnType, *, request: bool = False) -> Any:
    """The Python type of a column's values in JSON: media columns are URL (or path) strings.

    For a request (`request=True`) the type carries the limits of what can be stored (int64
    range, no NUL in text, finite floats, JSON checked by _check_json).
    """
    if col_type.is_media_type():
        py_type: Any = Annotated[str, _TEXT] if request else str
        return py_type | None if col_type.nullable else py_type
    if not request:
        return col_type.to_pydantic_type()
    py_type = col_type.copy(nullable=False).to_pydantic_type()
    if col_type.is_json_type():
        py_type = Annotated[Any, pydantic.AfterValidator(_check_json)]
    else:
        py_type = _REQUEST_TYPES.get(py_type, py_type)
    return py_type | None if col_type.nullable else py_type


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
        kind = media_kind(col_type)
        if kind in _MEDIA_CONTENT_TYPES:
            extra["contentMediaType"] = _MEDIA_CONTENT_TYPES[kind]
    if default is ... and col_type.nullable:
        default = None
    py_type = python_type(col_type, request=not response)
    if form and col_type.is_json_type():
        py_type = Annotated[pydantic.Json[Any], pydantic.AfterValidator(_check_json)]
        py_type = py_type | None if col_type.nullable else py_type
    return py_type, pydantic.Field(default, description=description, json_schema_extra=extra or None)


def build_model(
    name: str, fields: dict[str, tuple[Any, Any]], *, base: type[pydantic.BaseModel]
) -> type[pydantic.BaseModel]:
    return pydantic.create_model(name, __base__=base, **fields)  # type: ignore[call-overload, no-any-return]


def model_name(kind: str, path: str, suffix: str) -> str:
    """A readable, unique-per-route model name, e.g. ('update', '/items/update', 'Request') -> UpdateItemsUpdateRequest."""
    parts = [p for p in path.replace("-", "/").replace("_", "/").replace(".", "/").split("/") if p]
    return kind.capitalize() + "".join(p[:1].upper() + p[1:] for p in parts if p.isidentifier()) + suffix


def json_serializer(response_model: Any) -> Callable[[Any], bytes]:
    """Validate a route's result against its response model and serialize it, both in pydantic-core.

    The views answer with these bytes instead of handing the result to Ninja, which would
    validate it through a wrapper model and encode it again with Django's JSON encoder.
    The output is pydantic's JSON, as the reference's FastAPI
    gives: full-precision ISO timestamps, and `null` for a float that is NaN or infinite
    (JSON has no such numbers).
    """
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(response_model)

    def serialize(value: Any) -> bytes:
        return adapter.dump_json(adapter.validate_python(value))

    return serialize
