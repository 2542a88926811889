"""Insert routes: one row in, the stored row (computed columns included) out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pixeltable as pxt

from pxtserve import schemas
from pxtserve.errors import RouteDefinitionError
from pxtserve.media import MediaUrls
from pxtserve.media_inputs import check_media_inputs
from pxtserve.routes.base import (
    RouteOperation,
    build_exporter,
    check_flags,
    check_outputs,
    check_path,
    check_uploads,
    export,
    pick_names,
    render_row,
    single_file,
)
from pxtserve.tables import TableInfo
from pxtserve.writes import writer_for

if TYPE_CHECKING:
    from pxtserve.export import SqlExport


@dataclass(kw_only=True)
class InsertOperation(RouteOperation):
    info: TableInfo
    outputs: list[str]
    # media inputs sent as JSON strings (uploads are files we wrote ourselves)
    json_media_inputs: list[str]

    def execute(self, inputs: dict[str, Any], media: MediaUrls) -> Any:
        check_media_inputs(inputs, self.json_media_inputs)
        with self.info.schema_checked():
            rows = [writer_for(self.info).insert(inputs)]
        if self.return_fileresponse:
            return single_file(rows, self.outputs[0])
        schema = {n: c.col_type for n, c in self.info.columns.items()}
        body = render_row(rows[0], self.outputs, schema, media)
        export(self, body)
        return body


def build_insert(
    table: pxt.Table | str,
    *,
    path: str,
    inputs: Sequence[str] | None = None,
    uploadfile_inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    return_fileresponse: bool = False,
    export_sql: SqlExport | None = None,
    background: bool = False,
) -> InsertOperation:
    check_path(path)
    check_flags(return_fileresponse=return_fileresponse, background=background, export_sql=export_sql)
    info = TableInfo.of(table)
    if info.kind != "table":
        raise RouteDefinitionError(f"cannot insert into {info.kind} {info.path!r}", field="table")
    schema = {n: c.col_type for n, c in info.columns.items()}
    insertable = {n: c.col_type for n, c in info.columns.items() if not c.is_computed}
    for name in [*(inputs or []), *(uploadfile_inputs or [])]:
        if name in info.columns and info.columns[name].is_computed:
            raise RouteDefinitionError(f"{name!r} is a computed column and cannot be an input", field="inputs")
    uploads = check_uploads(uploadfile_inputs, inputs, insertable, what="column")
    default_inputs = [n for n in insertable if n not in uploads]
    input_names = pick_names(inputs, insertable, default_inputs, what="input column", field="inputs")
    output_names = pick_names(outputs, schema, list(schema), what="output column", field="outputs")
    check_outputs(output_names, schema, return_fileresponse=return_fileresponse)
    missing = [n for n, t in insertable.items() if not t.nullable and n not in input_names and n not in uploads]
    if missing:
        raise RouteDefinitionError(
            f"inputs must include the required column(s) {', '.join(missing)} of {info.path!r}", field="inputs"
        )

    request_fields = {
        n: schemas.field(schema[n], description=info.columns[n].comment, form=bool(uploads)) for n in input_names
    }
    request_model = schemas.build_model(
        schemas.model_name("insert", path, "Request"), request_fields, base=schemas.RequestSchema
    )
    response_model = schemas.build_model(
        schemas.model_name("insert", path, "Response"),
        {n: schemas.field(schema[n], description=info.columns[n].comment, response=True) for n in output_names},
        base=schemas.ResponseSchema,
    )
    return InsertOperation(
        kind="insert",
        method="POST",
        path=path,
        request_model=request_model,
        input_location="form" if uploads else "body",
        response_model=Path if return_fileresponse else response_model,
        upload_fields=uploads,
        optional_uploads=[n for n in uploads if schema[n].nullable],
        background=background,
        return_fileresponse=return_fileresponse,
        exporter=build_exporter(export_sql, {n: schema[n] for n in output_names}, f"POST {path}"),
        export_spec=export_sql,
        summary=f"Insert a row into {info.path}",
        details={"table": info.path, "outputs": output_names},
        info=info,
        outputs=output_names,
        media_outputs=any(schema[n].is_media_type() for n in output_names),
        json_media_inputs=[n for n in input_names if schema[n].is_media_type()],
    )
