"""Delete routes: rows matching every given column value (AND-ed equality) are deleted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from pxtserve import schemas
from pxtserve.errors import RouteDefinitionError
from pxtserve.media import MediaUrls
from pxtserve.routes.checks import pick_names, request_model
from pxtserve.routes.operation import Operation
from pxtserve.routes.spec import Names, RouteSpec, TableRef
from pxtserve.tables import TableInfo
from pxtserve.writes import writer_for


class DeleteRoute(RouteSpec):
    """POST `path` deletes the rows equal to the body on `match_columns` (default: the primary key)."""

    kind: ClassVar[str] = "delete"
    type: Literal["delete"] = "delete"
    table: TableRef
    match_columns: Names = Field(None, description="columns the body must match (AND-ed); default: the primary key")

    def build_operation(self) -> DeleteOperation:
        info = TableInfo.of(self.table)
        if info.kind != "table":
            raise RouteDefinitionError(f"cannot delete from {info.kind} {info.name!r}", field="table")
        if self.match_columns is None and not info.primary_key:
            raise RouteDefinitionError(
                f"table {info.name!r} has no primary key; list the columns to match in match_columns",
                field="match_columns",
            )
        matchable = {n: c for n, c in info.columns.items() if not c.is_media}
        names = pick_names(self.match_columns, matchable, info.primary_key, what="match column", field="match_columns")
        if not names:
            raise RouteDefinitionError("match_columns must not be empty", field="match_columns")
        for name in names:
            col_type = info.columns[name].col_type
            if col_type.is_json_type() or col_type.is_array_type():
                raise RouteDefinitionError(f"cannot match on {col_type} column {name!r}", field="match_columns")
        # a match value is always required: a missing one must not widen the delete
        fields = {
            n: (schemas.python_type(info.columns[n].col_type.copy(nullable=False), request=True), ...) for n in names
        }
        return DeleteOperation(
            spec=self,
            method="POST",
            request_model=request_model(self.kind, self.path, fields),
            input_location="body",
            response_model=schemas.DeleteResponse,
            summary=f"Delete rows of {info.name} matching {', '.join(names)}",
            writes=True,
            details={"table": info.path, "match_columns": names},
            info=info,
        )


@dataclass(kw_only=True)
class DeleteOperation(Operation):
    info: TableInfo

    def execute(self, inputs: dict[str, Any], media: MediaUrls) -> Any:
        writer = writer_for(self.info)
        with self.info.schema_checked():
            return {"num_rows": writer.delete(inputs)}
