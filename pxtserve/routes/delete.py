"""Delete routes: rows matching every given column value (AND-ed equality) are deleted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pixeltable as pxt

from pxtserve import schemas
from pxtserve.errors import RouteDefinitionError
from pxtserve.media import MediaUrls
from pxtserve.routes.base import RouteOperation, check_path, pick_names
from pxtserve.tables import TableInfo
from pxtserve.writes import writer_for


@dataclass(kw_only=True)
class DeleteOperation(RouteOperation):
    info: TableInfo
    match_columns: list[str]

    def execute(self, inputs: dict[str, Any], media: MediaUrls) -> Any:
        writer = writer_for(self.info)
        with self.info.schema_checked():
            return {"num_rows": writer.delete(inputs)}


def build_delete(
    table: pxt.Table | str,
    *,
    path: str,
    match_columns: Sequence[str] | None = None,
    background: bool = False,
) -> DeleteOperation:
    check_path(path)
    info = TableInfo.of(table)
    if info.kind != "table":
        raise RouteDefinitionError(f"cannot delete from {info.kind} {info.path!r}", field="table")
    if match_columns is None and not info.primary_key:
        raise RouteDefinitionError(
            f"table {info.path!r} has no primary key; list the columns to match in match_columns",
            field="match_columns",
        )
    matchable = {n: c for n, c in info.columns.items() if not c.is_media}
    names = pick_names(match_columns, matchable, info.primary_key, what="match column", field="match_columns")
    if not names:
        raise RouteDefinitionError("match_columns must not be empty", field="match_columns")
    for name in names:
        col_type = info.columns[name].col_type
        if col_type.is_json_type() or col_type.is_array_type():
            raise RouteDefinitionError(f"cannot match on {col_type} column {name!r}", field="match_columns")

    # a match value is always required: a missing one must not widen the delete
    request_fields = {
        n: (schemas.python_type(info.columns[n].col_type.copy(nullable=False), request=True), ...) for n in names
    }
    request_model = schemas.build_model(
        schemas.model_name("delete", path, "Request"), request_fields, base=schemas.RequestSchema
    )
    return DeleteOperation(
        kind="delete",
        method="POST",
        path=path,
        request_model=request_model,
        input_location="body",
        response_model=schemas.DeleteResponse,
        background=background,
        summary=f"Delete rows of {info.path} matching {', '.join(names)}",
        details={"table": info.path, "match_columns": names},
        info=info,
        match_columns=names,
    )
