"""Insert routes: one row in, the stored row (computed columns included) out; with `batch`, many rows in one call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pixeltable as pxt

from pxtserve.errors import RouteDefinitionError
from pxtserve.routes.batch import failed_insert
from pxtserve.routes.checks import check_required, row_contract
from pxtserve.routes.operation import RowsOperation, Shape
from pxtserve.routes.spec import Batch, TableRowsSpec, UploadInputs
from pxtserve.tables import TableInfo
from pxtserve.writes import writer_for


class InsertRoute(TableRowsSpec):
    """POST `path` inserts one row into `table` and answers with its `outputs` (computed columns included)."""

    kind: ClassVar[str] = "insert"
    type: Literal["insert"] = "insert"
    uploadfile_inputs: UploadInputs = None
    batch: Batch = False

    def build_operation(self) -> InsertOperation:
        info = TableInfo.of(self.table)
        if info.kind != "table":
            raise RouteDefinitionError(f"cannot insert into {info.kind} {info.name!r}", field="table")
        contract = row_contract(self, input_columns=info.columns, output_columns=info.columns)
        required = [n for n, c in info.columns.items() if not (c.is_computed or c.col_type.nullable)]
        check_required(required, contract, table=info.path)
        return InsertOperation(
            spec=self,
            method="POST",
            **contract.operation_fields(),
            response_model=None if self.return_fileresponse else contract.row_model,
            summary=f"Insert a row into {info.name}",
            writes=True,
            details={"table": info.path, "outputs": contract.outputs},
            shape=Shape.ONE,
            info=info,
        )


@dataclass(kw_only=True)
class InsertOperation(RowsOperation):
    info: TableInfo

    def fetch(self, inputs: dict[str, Any]) -> Sequence[Mapping[str, Any]]:
        with self.info.schema_checked():
            return [writer_for(self.info).insert(inputs)]

    def fetch_batch(self, rows: list[dict[str, Any]]) -> list[Sequence[Mapping[str, Any]]]:
        try:
            with self.info.schema_checked():
                stored = writer_for(self.info).insert_rows(rows)
        except pxt.Error as exc:
            raise failed_insert(self.info, rows, exc) from exc
        return [[row] for row in stored]
