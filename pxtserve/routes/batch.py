"""Batch routes (`batch = true` on insert and compute routes): many rows in one request, answered in order.

The body is `{"rows": [row, ...]}` (1 to MAX_BATCH_ROWS rows), each row the single-row route's body, so a bad
one is a 422 at `rows.<index>.<field>`; the answer is `{"rows": [answer, ...]}`, each what the single-row route
answers for that row. An insert batch is one Pixeltable `insert` (pxtserve.writes gives it a call of its own),
so it is stored all or nothing; when Pixeltable refuses it, the error names the row at fault (`rows.3: ...`).
A batch takes JSON only: a multipart upload carries one file per field, not one per row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pixeltable as pxt
import pydantic

from pxtserve import conf, schemas
from pxtserve.errors import ApiError, RouteDefinitionError
from pxtserve.tables import TableInfo, where_any

if TYPE_CHECKING:
    from pxtserve.routes.operation import RowsOperation

# Pixeltable's own row number ("In row 0 the expression ..."): it counts within its internal chunk, not the batch
_PIXELTABLE_ROW = re.compile(r"\bIn row \d+ (the expression )")


def check_batch(spec: Any) -> None:
    """The options a batch route cannot take (`spec`: an insert or compute declaration, or one without `batch`)."""
    if not getattr(spec, "batch", False):
        return
    if spec.uploadfile_inputs:
        raise RouteDefinitionError(
            "a batch route takes JSON only: uploadfile_inputs cannot be combined with batch = true "
            "(send media as URLs or paths in the rows)",
            field="uploadfile_inputs",
        )
    if spec.return_fileresponse:
        raise RouteDefinitionError(
            "a batch route answers with JSON rows: return_fileresponse cannot be combined with batch = true",
            field="return_fileresponse",
        )


def make_batch(operation: RowsOperation) -> None:
    """Give a built single-row operation its batch contract, when its declaration says `batch = true`.

    The row models stay what they are (the OpenAPI document shows them, referenced by the batch models).
    """
    if not getattr(operation.spec, "batch", False):
        return
    kind, path, limit = operation.kind, operation.path, conf.settings().MAX_BATCH_ROWS
    # `serve --dry-run` lists a row's fields as the inputs, not the batch's one field
    operation.details.update(batch=True, inputs=list(operation.request_model.model_fields))
    rows_in = pydantic.Field(min_length=1, max_length=limit, description=f"the rows, 1 to {limit}")
    operation.request_model = pydantic.create_model(
        schemas.model_name(kind, path, "BatchRequest"),
        __base__=schemas.RequestSchema,
        rows=(list[operation.request_model], rows_in),  # type: ignore[name-defined]
    )
    rows_out = pydantic.Field(description="each row's answer, in the order of the request's rows")
    operation.response_model = pydantic.create_model(
        schemas.model_name(kind, path, "BatchResponse"),
        __base__=schemas.ResponseSchema,
        rows=(list[operation.response_model], rows_out),  # type: ignore[name-defined]
    )
    operation.batch = True
    operation.summary += f" (a batch of 1 to {limit} rows)"


def in_row(index: int, exc: Exception) -> Exception:
    """`exc`, its message naming the batch row it is about (its class, code and status kept)."""
    prefix = f"rows.{index}: "
    if isinstance(exc, ApiError):
        return ApiError(exc.status, exc.code, prefix + exc.message)
    if isinstance(exc, pxt.Error):
        message = prefix + _PIXELTABLE_ROW.sub(r"\1", exc.message)
        return pxt.Error.from_dict({**exc.to_dict(with_detail=True), "message": message})
    return exc


def failed_insert(info: TableInfo, rows: Sequence[dict[str, Any]], exc: pxt.Error) -> pxt.Error:
    """The error of a refused batch insert, naming the row at fault when it can be found, and that none was stored."""
    index = _guilty_row(info, rows, exc)
    named = exc if index is None else in_row(index, exc)
    assert isinstance(named, pxt.Error)
    return pxt.Error.from_dict(
        {**named.to_dict(with_detail=True), "message": f"{named.message}; nothing of the batch was stored"}
    )


def _guilty_row(info: TableInfo, rows: Sequence[dict[str, Any]], exc: pxt.Error) -> int | None:
    """Which row a refused insert is about: Pixeltable's error says what went wrong, not in which of the rows.

    Run only after a failure, so its reads cost nothing on the way that succeeds.
    """
    table, key = info.table, info.primary_key
    if key and exc.error_code is pxt.ErrorCode.CONSTRAINT_VIOLATION:
        keys = [tuple(row.get(name) for name in key) for row in rows]
        seen: set[tuple[Any, ...]] = set()
        for index, row_key in enumerate(keys):
            if row_key in seen:
                return index  # the later of two rows of the batch with one key
            seen.add(row_key)
        found = table.where(where_any(table, [dict(zip(key, k)) for k in keys])).select(*[table[n] for n in key])
        stored = {tuple(row[n] for n in key) for row in found.collect()}
        return next((index for index, row_key in enumerate(keys) if row_key in stored), None)
    # a computed column that raised: compute() stores nothing, so each row is tried on its own
    for index, row in enumerate(rows):
        try:
            list(table.compute([row]))
        except pxt.Error:
            return index
    return None
