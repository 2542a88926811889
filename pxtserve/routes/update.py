"""Update routes: a row picked by its primary key, new values in, the updated row
(recomputed columns included) out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pixeltable as pxt

from pxtserve import schemas
from pxtserve.errors import ApiError, RouteDefinitionError
from pxtserve.media import MediaUrls
from pxtserve.routes.base import (
    RouteOperation,
    build_exporter,
    check_flags,
    check_outputs,
    check_path,
    export,
    pick_names,
    render_row,
    single_file,
)
from pxtserve.tables import TableInfo, where_all_equal
from pxtserve.writes import writer_for

if TYPE_CHECKING:
    from pxtserve.export import SqlExport


@dataclass(kw_only=True)
class UpdateOperation(RouteOperation):
    info: TableInfo
    outputs: list[str]

    def execute(self, inputs: dict[str, Any], media: MediaUrls) -> Any:
        key = {n: inputs[n] for n in self.info.primary_key}
        with self.info.schema_checked():
            if len(inputs) == len(key):
                # nothing to change (every input was optional and left out): answer with the row as it is
                table = self.info.table
                query = table.where(where_all_equal(table, key)).select(*[table[n] for n in self.outputs])
                rows = list(query.collect())
            else:
                row = writer_for(self.info).update(inputs)
                rows = [row] if row is not None else []
        if not rows:
            raise ApiError(404, "ROW_NOT_FOUND", f"no row in {self.info.path!r} has primary key {key}")
        if self.return_fileresponse:
            return single_file(rows, self.outputs[0])
        schema = {n: c.col_type for n, c in self.info.columns.items()}
        body = render_row(rows[0], self.outputs, schema, media)
        export(self, body)
        return body


def build_update(
    table: pxt.Table | str,
    *,
    path: str,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    return_fileresponse: bool = False,
    export_sql: SqlExport | None = None,
    background: bool = False,
) -> UpdateOperation:
    check_path(path)
    check_flags(return_fileresponse=return_fileresponse, background=background, export_sql=export_sql)
    info = TableInfo.of(table)
    if info.kind != "table":
        raise RouteDefinitionError(f"cannot update {info.kind} {info.path!r}", field="table")
    if not info.primary_key:
        raise RouteDefinitionError(
            f"table {info.path!r} has no primary key; update routes identify the row by it", field="table"
        )
    schema = {n: c.col_type for n, c in info.columns.items()}
    for name in inputs or []:
        col = info.columns.get(name)
        if col is None:
            continue  # pick_names reports it
        if col.is_primary_key:
            raise RouteDefinitionError(
                f"{name!r} is a primary key column: it is always in the request body and cannot be an input",
                field="inputs",
            )
        if col.is_computed:
            raise RouteDefinitionError(f"{name!r} is a computed column and cannot be an input", field="inputs")
        if col.is_media:
            raise RouteDefinitionError(
                f"{name!r} is a media column and cannot be updated (delete the row and insert it again)",
                field="inputs",
            )
    updatable = {
        n: c.col_type for n, c in info.columns.items() if not (c.is_primary_key or c.is_computed or c.is_media)
    }
    input_names = pick_names(inputs, updatable, list(updatable), what="input column", field="inputs")
    output_names = pick_names(outputs, schema, list(schema), what="output column", field="outputs")
    check_outputs(output_names, schema, return_fileresponse=return_fileresponse)

    request_fields = {n: schemas.field(schema[n], description=info.columns[n].comment) for n in info.primary_key}
    # every input is optional: the columns sent are updated, the others keep their values
    request_fields.update(
        {n: schemas.field(schema[n], description=info.columns[n].comment, default=None) for n in input_names}
    )
    request_model = schemas.build_model(
        schemas.model_name("update", path, "Request"), request_fields, base=schemas.RequestSchema
    )
    response_model = schemas.build_model(
        schemas.model_name("update", path, "Response"),
        {n: schemas.field(schema[n], description=info.columns[n].comment, response=True) for n in output_names},
        base=schemas.ResponseSchema,
    )
    return UpdateOperation(
        kind="update",
        method="POST",
        path=path,
        request_model=request_model,
        input_location="body",
        response_model=Path if return_fileresponse else response_model,
        background=background,
        return_fileresponse=return_fileresponse,
        exporter=build_exporter(export_sql, {n: schema[n] for n in output_names}, f"POST {path}"),
        export_spec=export_sql,
        summary=f"Update a row of {info.path} by primary key",
        details={"table": info.path, "primary_key": info.primary_key, "outputs": output_names},
        info=info,
        outputs=output_names,
        media_outputs=any(schema[n].is_media_type() for n in output_names),
    )
