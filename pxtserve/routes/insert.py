"""Insert routes: one row in, the stored row (computed columns included) out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pxtserve.errors import RouteDefinitionError
from pxtserve.media_inputs import check_media_inputs
from pxtserve.routes.checks import check_required, row_contract
from pxtserve.routes.operation import RowsOperation, Shape
from pxtserve.routes.spec import TableRowsSpec, UploadInputs
from pxtserve.tables import TableInfo
from pxtserve.writes import writer_for


class InsertRoute(TableRowsSpec):
    """POST `path` inserts one row into `table` and answers with its `outputs` (computed columns included)."""

    kind: ClassVar[str] = "insert"
    type: Literal["insert"] = "insert"
    uploadfile_inputs: UploadInputs = None

    def build_operation(self) -> InsertOperation:
        info = TableInfo.of(self.table)
        if info.kind != "table":
            raise RouteDefinitionError(f"cannot insert into {info.kind} {info.path!r}", field="table")
        contract = row_contract(
            self.kind,
            path=self.path,
            inputs=self.inputs,
            uploads=self.uploadfile_inputs,
            outputs=self.outputs,
            return_fileresponse=self.return_fileresponse,
            input_columns=info.columns,
            output_columns=info.columns,
        )
        required = [n for n, c in info.columns.items() if not (c.is_computed or c.col_type.nullable)]
        check_required(required, contract, table=info.path)
        return InsertOperation(
            spec=self,
            method="POST",
            request_model=contract.request_model,
            input_location=contract.input_location,
            response_model=None if self.return_fileresponse else contract.row_model,
            upload_fields=contract.uploads,
            optional_uploads=contract.optional_uploads,
            summary=f"Insert a row into {info.path}",
            writes=True,
            media_outputs=contract.media_outputs,
            export_columns=contract.output_types,
            details={"table": info.path, "outputs": contract.outputs},
            outputs=contract.outputs,
            output_types=contract.output_types,
            shape=Shape.ONE,
            info=info,
            json_media_inputs=contract.json_media_inputs,
        )


@dataclass(kw_only=True)
class InsertOperation(RowsOperation):
    info: TableInfo
    json_media_inputs: list[str]

    def fetch(self, inputs: dict[str, Any]) -> Sequence[Mapping[str, Any]]:
        check_media_inputs(inputs, self.json_media_inputs)
        with self.info.schema_checked():
            return [writer_for(self.info).insert(inputs)]
