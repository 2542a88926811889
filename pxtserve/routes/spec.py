"""What every route declaration shares: the fields, their validation, and how a declaration becomes an operation.

A route kind is a subclass of `RouteSpec` in its own module (insert, update, delete,
query, compute), holding every field of that kind. The TOML loader, the CLI's
single-endpoint flags (pxtserve.cli_flags) and the Python API (PixeltableRouter's
add_*_route and decorators) all validate their arguments into the same spec; its
`build()` checks it against Pixeltable and returns the served operation.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from pxtserve.conf import expand_env_vars
from pxtserve.errors import RouteDefinitionError
from pxtserve.export import SqlExport, build_exporter
from pxtserve.routes.batch import check_batch, make_batch
from pxtserve.routes.functions import apply_response_function
from pxtserve.routes.operation import Operation, RowsOperation


def _expanded(text: str, field: str) -> str:
    """${VAR} expanded from the environment, so secrets (passwords, tokens in URLs) need not be written into files."""
    try:
        return expand_env_vars(text)
    except KeyError as exc:
        raise ValueError(f"{field} refers to the environment variable {exc.args[0]}, which is not set") from None


def _expand_export(v: Any) -> Any:
    if isinstance(v, dict) and isinstance(v.get("db_connect"), str):
        return {**v, "db_connect": _expanded(v["db_connect"], "db_connect")}
    return v


def _expand_webhook(v: Any) -> Any:
    return _expanded(v, "webhook_url") if isinstance(v, str) else v


# --- the options several kinds share, each declared once ----------------------------------------------------------

Names = list[str] | None
Inputs = Annotated[Names, Field(description="request fields (columns or query parameters); default: all that fit")]
Outputs = Annotated[Names, Field(description="response columns; default: all columns")]
UploadInputs = Annotated[
    Names, Field(description="media inputs sent as multipart file uploads (the other inputs become form fields)")
]
ReturnFile = Annotated[bool, Field(description="answer with the single media output as a file")]
ExportSql = Annotated[
    SqlExport | None,
    pydantic.BeforeValidator(_expand_export),
    Field(description="write each response row to an external SQL table"),
]
WebhookUrl = Annotated[
    str | None,
    pydantic.BeforeValidator(_expand_webhook),
    Field(description="background routes: POST each finished job's final status (signed) to this http(s) URL"),
]
# a table path ("dir.table"), or a pxt.Table from Python
TableRef = Annotated[Any, Field(description="the table (or view) path, e.g. my_dir.my_table")]
# the decorator routes' function (Python only): it shapes the response body from the output columns
ResponseFunction = Annotated[Callable[..., BaseModel] | None, Field(exclude=True)]
# insert and compute routes (pxtserve.routes.batch)
Batch = Annotated[bool, Field(description='take {"rows": [row, ...]} (1 to MAX_BATCH_ROWS) and answer each, in order')]
# multi-row query routes (pxtserve.routes.paging)
PageSize = Annotated[
    pydantic.PositiveInt | None, Field(description="answer pages of at most this many rows, with a cursor to the next")
]


class RouteSpec(BaseModel):
    """A route declaration: its kind's fields, validated. `build()` turns it into an Operation."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    # the kinds' names, as TOML's `type` and the CLI's target give them
    kind: ClassVar[str]
    # whether a response function may take every row (the batch form: compute routes)
    takes_batch_function: ClassVar[bool] = False

    path: str = Field(description="the URL path, e.g. /items")
    background: bool = Field(False, description="answer 202 with a job URL at once and run the request as a job")
    # None: the service's auth; "none" makes this route public on a protected service
    auth: Literal["none", "api_key"] | None = Field(None, description="this route's auth, if not the service's")
    # after `background`, which its check reads (pxtserve.jobs.webhooks delivers)
    webhook_url: WebhookUrl = None

    @pydantic.field_validator("path")
    @classmethod
    def _leading_slash(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"path must start with '/', got {v!r}")
        return v

    @pydantic.field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, v: str | None, info: pydantic.ValidationInfo) -> str | None:
        if v is None:
            return v
        if not info.data.get("background"):
            raise ValueError("webhook_url needs background = true: only a background job finishes later")
        parsed = urllib.parse.urlsplit(v)
        if parsed.scheme.lower() not in ("http", "https") or not parsed.hostname:
            # the URL is not repeated: ${VAR} may have put a token in it
            raise ValueError("webhook_url must be an http(s) URL with a host")
        return v

    @classmethod
    def declare(cls, **fields: Any) -> RouteSpec:
        """The spec from Python keyword arguments; a bad one is a RouteDefinitionError naming the field."""
        try:
            return cls.model_validate({"type": cls.kind, **fields})
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else None
            message = str(err["ctx"]["error"]) if err["type"] == "value_error" else f"{field}: {err['msg']}"
            raise RouteDefinitionError(message, field=field) from None

    def build(self) -> Operation:
        """Check the declaration against Pixeltable and return the operation that serves it."""
        operation = self.check_arguments()
        export_sql = getattr(self, "export_sql", None)
        function = getattr(self, "response_function", None)
        if function is not None:
            assert isinstance(operation, RowsOperation)
            apply_response_function(
                operation,
                function,
                decorator=f"{self.kind}_route()",
                batch_allowed=self.takes_batch_function,
                export=export_sql is not None,
            )
        operation.exporter = build_exporter(export_sql, operation.export_columns, operation.display_name)
        if isinstance(operation, RowsOperation):
            make_batch(operation)  # after the response function: a batch answers with a list of its bodies
        return operation

    def check_arguments(self) -> Operation:
        """Check everything but the response function; the kind's operation without it and its export."""
        self.check_options()
        check_batch(self)
        return self.build_operation()

    def check_options(self) -> None:
        """Checks across fields (the fields themselves are checked by their types and validators)."""

    def build_operation(self) -> Operation:
        """The kind's operation, without its response function and export (which `build` adds)."""
        raise NotImplementedError


class TableRowsSpec(RouteSpec):
    """The fields of the kinds that take a table row and answer with columns of it (insert, update, compute)."""

    table: TableRef
    inputs: Inputs = None
    outputs: Outputs = None
    return_fileresponse: ReturnFile = False
    export_sql: ExportSql = None
    response_function: ResponseFunction = None

    def check_options(self) -> None:
        if self.return_fileresponse and self.background:
            raise RouteDefinitionError(
                "return_fileresponse and background are mutually exclusive", field="return_fileresponse"
            )
        if self.return_fileresponse and self.export_sql is not None:
            raise RouteDefinitionError("export_sql and return_fileresponse are mutually exclusive", field="export_sql")
        if self.return_fileresponse and self.response_function is not None:
            raise RouteDefinitionError(
                "a decorator route answers with its function's model, not a file", field="return_fileresponse"
            )
