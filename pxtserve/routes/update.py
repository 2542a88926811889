"""Update routes: a row picked by its primary key, new values in, the updated row
(recomputed columns included) out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pxtserve.errors import ApiError, RouteDefinitionError
from pxtserve.routes.checks import check_outputs, column_fields, pick_names, request_model, row_model
from pxtserve.routes.operation import RowsOperation, Shape
from pxtserve.routes.spec import TableRowsSpec
from pxtserve.tables import TableInfo, where_all_equal
from pxtserve.writes import writer_for


class UpdateRoute(TableRowsSpec):
    """POST `path` updates the row with the body's primary key and answers with its `outputs`.

    Inputs default to the non-key, non-computed, non-media columns; each is optional in
    the request: the columns sent are updated, the others keep their values.
    """

    kind: ClassVar[str] = "update"
    type: Literal["update"] = "update"

    def build_operation(self) -> UpdateOperation:
        info = TableInfo.of(self.table)
        if info.kind != "table":
            raise RouteDefinitionError(f"cannot update {info.kind} {info.name!r}", field="table")
        if not info.primary_key:
            raise RouteDefinitionError(
                f"table {info.name!r} has no primary key; update routes identify the row by it", field="table"
            )
        for name in self.inputs or []:
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
        updatable = {n: c for n, c in info.columns.items() if not (c.is_primary_key or c.is_computed or c.is_media)}
        input_names = pick_names(self.inputs, updatable, list(updatable), what="input column", field="inputs")
        types = {n: c.col_type for n, c in info.columns.items()}
        output_names = pick_names(self.outputs, types, list(types), what="output column", field="outputs")
        check_outputs(output_names, types, return_fileresponse=self.return_fileresponse)
        fields = {
            **column_fields(info.primary_key, info.columns),
            **column_fields(input_names, info.columns, optional=True),
        }
        output_types = {n: types[n] for n in output_names}
        return UpdateOperation(
            spec=self,
            method="POST",
            request_model=request_model(self.kind, self.path, fields),
            input_location="body",
            response_model=None
            if self.return_fileresponse
            else row_model(self.kind, self.path, output_names, info.columns),
            summary=f"Update a row of {info.name} by primary key",
            writes=True,
            partial_inputs=True,
            media_outputs=any(t.is_media_type() for t in output_types.values()),
            export_columns=output_types,
            details={"table": info.path, "primary_key": info.primary_key, "outputs": output_names},
            outputs=output_names,
            output_types=output_types,
            shape=Shape.ONE,
            info=info,
        )


@dataclass(kw_only=True)
class UpdateOperation(RowsOperation):
    info: TableInfo

    def fetch(self, inputs: dict[str, Any]) -> Sequence[Mapping[str, Any]]:
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
            raise ApiError(404, "ROW_NOT_FOUND", f"no row in {self.info.name!r} has primary key {key}")
        return rows
