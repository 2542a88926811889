"""Compute routes: a table's (or view's) computed columns run on the request's row, storing nothing.

Backed by `Table.compute()`. For a view, the request carries a row of the view's base
table (the root of its hierarchy) and the answer is what the view would hold for it:
at most one row (an object, or null when the view's filter drops it), or, when the
view's path has an iterator, every row it makes (an array, possibly empty).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pxtserve.errors import RouteDefinitionError
from pxtserve.media_store import keep_file
from pxtserve.pxt_internals import compute_input_requirements
from pxtserve.routes.checks import check_required, row_contract
from pxtserve.routes.functions import is_batch_function
from pxtserve.routes.operation import RowsOperation, Shape
from pxtserve.routes.spec import Batch, TableRowsSpec, UploadInputs
from pxtserve.tables import TableInfo, lineage

NO_ROW = "compute produced no row: the view's filter dropped the input row"


class ComputeRoute(TableRowsSpec):
    """POST `path` computes `table`'s columns for the request's row and answers with its `outputs`; nothing is stored."""

    kind: ClassVar[str] = "compute"
    takes_batch_function: ClassVar[bool] = True
    type: Literal["compute"] = "compute"
    uploadfile_inputs: UploadInputs = None
    batch: Batch = False

    def build_operation(self) -> ComputeOperation:
        info = TableInfo.of(self.table)
        chain = lineage(info.table)  # the table's metadata, then its bases', up to the root
        if any(md["kind"] == "snapshot" for md in chain):
            raise RouteDefinitionError(
                f"cannot compute {info.kind} {info.name!r}: its base hierarchy contains a snapshot", field="table"
            )
        if any(md.get("view_sample") for md in chain):
            raise RouteDefinitionError(
                f"cannot compute view {info.name!r}: it is defined with a sample clause", field="table"
            )
        root = info if len(chain) == 1 else TableInfo.of(chain[-1]["path"])
        contract = row_contract(self, input_columns=root.columns, output_columns=info.columns)
        remedy = ", or restrict outputs to columns that do not depend on them"
        check_required(
            compute_input_requirements(info.table, contract.outputs), contract, table=root.path, remedy=remedy
        )
        iterator = any(md.get("iterator_call") for md in chain)
        batch = self.response_function is not None and is_batch_function(self.response_function)
        if batch and not iterator:
            raise RouteDefinitionError(
                "compute_route(): the batch form (a single list[M] parameter) requires a view whose path contains "
                "an iterator; this target produces at most one row, so use one keyword-only parameter per output",
                field="function",
            )
        shape = self._shape(iterator=iterator, batch=batch)
        row = contract.row_model
        response_model: Any = {Shape.LIST: list[row], Shape.OPTIONAL: row | None, Shape.ONE: row}[shape]  # type: ignore[valid-type]
        return ComputeOperation(
            spec=self,
            method="POST",
            **contract.operation_fields(),
            response_model=None if self.return_fileresponse else response_model,
            summary=f"Compute {info.name} for a row of {root.name} (nothing is stored)",
            details={"table": info.path, "base": root.path, "outputs": contract.outputs, "iterator": iterator},
            shape=shape,
            no_row_message=NO_ROW,
            info=info,
            iterator=iterator,
        )

    def _shape(self, *, iterator: bool, batch: bool) -> Shape:
        if self.return_fileresponse:
            return Shape.ONE
        if self.response_function is not None:
            # the batch form takes every row; the per-column form exactly one
            return Shape.LIST if batch else Shape.ONE
        return Shape.LIST if iterator else Shape.OPTIONAL


@dataclass(kw_only=True)
class ComputeOperation(RowsOperation):
    info: TableInfo
    iterator: bool

    def fetch(self, inputs: dict[str, Any]) -> Sequence[Mapping[str, Any]]:
        try:
            # schema_checked names the computed column that raised, as for inserts and updates
            with self.info.schema_checked():
                rows = [dict(row) for row in self.info.table.compute([inputs], outputs=self.outputs)]
        except BaseException:
            # nothing is stored, whatever failed (a changed schema's 409 too): the uploads go
            self._remove_uploads(inputs)
            raise
        # compute() stores nothing: an upload the answer shows goes to the store of response media, the others
        # are removed (an insert would have moved them into Pixeltable's store)
        for name in self.upload_fields:
            if name in self.outputs and inputs.get(name):
                kept = keep_file(Path(inputs[name])).as_uri()
                for row in rows:
                    row[name] = kept
        self._remove_uploads(inputs)
        return rows

    def _remove_uploads(self, inputs: dict[str, Any]) -> None:
        for name in self.upload_fields:
            if inputs.get(name):
                Path(inputs[name]).unlink(missing_ok=True)
