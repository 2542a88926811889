"""PixeltableRouter: a Ninja router whose routes are Pixeltable operations.

Every entry point (TOML, CLI flags, Python) ends in `add_route(spec)`: the
add_*_route methods and the decorators here are thin wrappers that validate their
keyword arguments into the kind's declaration (pxtserve.routes), whose fields are
the only place a route option is declared; their signatures are generated from it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from ninja import Router
from ninja.constants import NOT_SET

from pxtserve import conf, idempotency, registry, schemas
from pxtserve.errors import RouteDefinitionError
from pxtserve.jobs.listing import JobList
from pxtserve.jobs.store import JobHandle, JobStatus
from pxtserve.jobs.submit import JobRoute
from pxtserve.jobs.webhooks import unsigned_routes_message
from pxtserve.mcp_endpoint import add_endpoint as add_mcp_endpoint
from pxtserve.media_signing import MediaOperation
from pxtserve.operation_ids import claim_api_unique_id, free_operation_id, readable_operation_id
from pxtserve.route_operation import use_route_operation
from pxtserve.routes import kinds
from pxtserve.routes.functions import RouteFunction
from pxtserve.routes.operation import Operation
from pxtserve.routes.spec import RouteSpec
from pxtserve.views import (
    make_job_cancel_view,
    make_job_list_view,
    make_job_status_view,
    make_media_view,
    make_operation_view,
)

_Function = TypeVar("_Function", bound=RouteFunction)

# path prefixes the router serves itself
RESERVED_PREFIXES = ("/media/", "/jobs/", "/metrics/", "/mcp/")
# the job operations, documented once the router has a background route
_JOB_PATHS = ("/jobs/{job_id}", "/jobs", "/jobs/{job_id}/cancel")

_logger = logging.getLogger("pxtserve")

# every route may answer these with an ErrorResponse (413: the body limit, 504: REQUEST_TIMEOUT)
_ERROR_STATUSES = (400, 404, 409, 413, 422, 500, 504)
# ... and these in Ninja's own shapes too: a body that is not JSON, a request that does not validate
_NINJA_ERRORS: dict[int, Any] = {
    400: schemas.ErrorResponse | schemas.MessageResponse,
    422: schemas.ErrorResponse | schemas.ValidationErrorResponse,
}
_FILE_RESPONSE = {
    "responses": {
        "200": {"description": "The file", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
    }
}


class PixeltableRouter(Router):
    """A `ninja.Router` serving Pixeltable tables and queries.

    Mount it like any router: `api.add_router("/pxt", router)`. Media files
    of its responses are served under `<mount>/media/...`, and background jobs
    are polled under `<mount>/jobs/<id>`, cancelled at `<mount>/jobs/<id>/cancel`
    and listed at `<mount>/jobs`.

    `name` qualifies the keys by which job workers find this router's routes
    ("<name>: POST /path"); give one when a process builds several routers
    serving the same method and path differently. `mcp` serves the routes as MCP
    tools at `<mount>/mcp` (default: PXTSERVE["MCP"]; pxtserve.mcp_endpoint).
    """

    router_id: int

    def __init__(self, *args: Any, name: str | None = None, mcp: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = name
        self.operations: list[Operation] = []
        # the operationIds of this router's operations, unique among them (see readable_operation_id)
        self.operation_ids: set[str] = set()
        registry.register_router(self)
        self.media_url_name = f"pxtserve_media_{self.router_id}"
        self._media_protected: bool | None = None
        media_view = make_media_view(self.media_protected)
        self.add_api_operation(
            "/media/{path:path}",
            ["GET", "HEAD"],
            media_view,
            url_name=self.media_url_name,
            operation_id=f"pxtserve_media_{self.router_id}",
            include_in_schema=False,
        )
        media_view._ninja_operation.__class__ = MediaOperation  # type: ignore[attr-defined]
        self.job_url_name = f"pxtserve_job_{self.router_id}"
        self._add_job_operations()
        self.mcp = conf.settings().MCP if mcp is None else mcp
        if self.mcp:
            add_mcp_endpoint(self)

    def _add_job_operations(self) -> None:
        """Poll (GET <mount>/jobs/{job_id}), cancel (POST .../cancel) and list (GET <mount>/jobs) this router's jobs;
        documented once the router has a background route (add_operation)."""
        not_found = {404: schemas.ErrorResponse}
        jobs: list[tuple[str, str, Callable[..., Any], dict[int, Any], str, str, str]] = [
            ("/jobs/{job_id}", "GET", make_job_status_view(self.operation_for_key), {200: JobStatus, **not_found},
             self.job_url_name, "poll_job", "Poll a background job"),
            ("/jobs/{job_id}/cancel", "POST", make_job_cancel_view(self.operation_for_key),
             {200: JobStatus, **not_found, 409: schemas.ErrorResponse}, f"pxtserve_job_cancel_{self.router_id}",
             "cancel_job", "Cancel a pending background job"),
            ("/jobs", "GET", make_job_list_view(lambda: self.operations, self.route_key, self.job_url_name),
             {200: JobList, 422: _NINJA_ERRORS[422]}, f"pxtserve_jobs_{self.router_id}", "list_jobs",
             "List background jobs, newest first"),
        ]  # fmt: skip
        for path, method, view, response, url_name, plain_id, summary in jobs:
            self.add_api_operation(
                path,
                [method],
                view,
                response=response,
                url_name=url_name,
                operation_id=self._unique_operation_id(plain_id),
                summary=summary,
                include_in_schema=False,
            )
            self._make_api_unique(view, plain_id)

    # --- the route kinds: each validates its arguments into the kind's declaration ----------------

    def add_insert_route(self, t: Any, *, auth: Any = NOT_SET, **fields: Any) -> Operation:
        """POST `path` inserts one row into `t` and answers with its `outputs` (computed columns included)."""
        return self.add_route(kinds.InsertRoute.declare(table=t, **fields), auth=auth)

    def add_update_route(self, t: Any, *, auth: Any = NOT_SET, **fields: Any) -> Operation:
        """POST `path` updates the row with the body's primary key and answers with its `outputs`."""
        return self.add_route(kinds.UpdateRoute.declare(table=t, **fields), auth=auth)

    def add_delete_route(self, t: Any, *, auth: Any = NOT_SET, **fields: Any) -> Operation:
        """POST `path` deletes the rows equal to the body on `match_columns` (default: the primary key)."""
        return self.add_route(kinds.DeleteRoute.declare(table=t, **fields), auth=auth)

    def add_query_route(self, *, auth: Any = NOT_SET, **fields: Any) -> Operation:
        """`method` `path` runs a @pxt.query function (or a dotted path to one) with the request's arguments."""
        return self.add_route(kinds.QueryRoute.declare(**fields), auth=auth)

    def add_compute_route(self, t: Any, *, auth: Any = NOT_SET, **fields: Any) -> Operation:
        """POST `path` computes `t`'s columns (a table's or a view's) for the request's row; nothing is stored."""
        return self.add_route(kinds.ComputeRoute.declare(table=t, **fields), auth=auth)

    def insert_route(self, t: Any, *, auth: Any = NOT_SET, **fields: Any) -> Callable[[_Function], _Function]:
        """Decorator: like add_insert_route, but the body is what the function returns.

        The function takes the `outputs` as keyword-only, annotated parameters (media
        columns as URL strings) and returns an instance of its pydantic return annotation.
        """
        return self._decorator(kinds.InsertRoute, auth, table=t, **fields)

    def update_route(self, t: Any, *, auth: Any = NOT_SET, **fields: Any) -> Callable[[_Function], _Function]:
        """Decorator: like add_update_route, but the body is what the function returns (see insert_route)."""
        return self._decorator(kinds.UpdateRoute, auth, table=t, **fields)

    def compute_route(self, t: Any, *, auth: Any = NOT_SET, **fields: Any) -> Callable[[_Function], _Function]:
        """Decorator: like add_compute_route, but the body is what the function returns.

        Per-column form: as for insert_route, called with the one computed row (404 when a
        view's filter drops it). Batch form, for a view whose path has an iterator: one
        parameter annotated `list[M]` (M a pydantic model with a field per output), called
        with every row, possibly none.
        """
        return self._decorator(kinds.ComputeRoute, auth, table=t, **fields)

    def _decorator(self, spec_class: type[RouteSpec], auth: Any, **fields: Any) -> Callable[[_Function], _Function]:
        # the route's arguments are checked now, the function when it is decorated
        spec_class.declare(**fields).check_arguments()

        def decorator(fn: _Function) -> _Function:
            self.add_route(spec_class.declare(**fields, response_function=fn), auth=auth)
            return fn

        return decorator

    # --- registration ------------------------------------------------------------------

    def add_route(self, spec: RouteSpec, *, auth: Any = NOT_SET) -> Operation:
        """Build a declared route and register it; `auth` is any Ninja auth (None: public; default: the router's)."""
        return self.add_operation(spec.build(), auth=auth)

    def add_operation(self, operation: Operation, *, auth: Any = NOT_SET) -> Operation:
        """Register a built operation as a Ninja operation of this router."""
        if any(operation.path.startswith(p) or operation.path == p.rstrip("/") for p in RESERVED_PREFIXES):
            raise RouteDefinitionError(
                f"path {operation.path!r} is reserved: pxtserve serves {', '.join(RESERVED_PREFIXES)} itself",
                field="path",
            )
        for existing in self.operations:
            if (existing.method, existing.path) == (operation.method, operation.path):
                raise RouteDefinitionError(f"another route already serves {operation.display_name}", field="path")
        index = len(self.operations)
        response: Any = {code: _NINJA_ERRORS.get(code, schemas.ErrorResponse) for code in _ERROR_STATUSES}
        if operation.input_location == "body":
            response[415] = schemas.ErrorResponse  # a Content-Type other than JSON (pxtserve.intake)
        openapi_extra: dict[str, Any] | None = None
        if operation.returns_file:
            response[502] = schemas.ErrorResponse  # the file is not available locally
            openapi_extra = _FILE_RESPONSE
        elif operation.background:
            response[202] = JobHandle
            response[429] = schemas.ErrorResponse  # MAX_PENDING_JOBS jobs are waiting already
            response[503] = schemas.ErrorResponse  # the job queue is unavailable
        else:
            response[200] = operation.response_model
        job_route = None
        if operation.background:
            webhook_url = operation.spec.webhook_url
            job_route = JobRoute(
                self.route_key(operation), registry.route_digest(operation), self.job_url_name, webhook_url
            )
            if webhook_url and conf.settings().WEBHOOK_SECRET is None:
                _logger.warning("%s", unsigned_routes_message([operation.display_name]))
        operation.signs_media = self.media_protected
        view = make_operation_view(operation, self.media_url_name, job_route)
        view = idempotency.guard(view, operation, self.route_key(operation))
        plain_id = readable_operation_id(operation.kind, operation.path)
        self.add_api_operation(
            operation.path,
            [operation.method],
            view,
            response=response,
            operation_id=self._unique_operation_id(plain_id),
            # url names stay internal and keyed by the router id: they need no stability across restarts
            url_name=f"pxtserve_{self.router_id}_{index}",
            summary=operation.summary,
            openapi_extra=idempotency.document(operation, openapi_extra),
            auth=auth,
        )
        self._make_api_unique(view, plain_id)
        use_route_operation([op for path_view in self.path_operations.values() for op in path_view.operations], view)
        operation.auth = auth
        self._media_protected = None
        if operation.background:
            for job_path in _JOB_PATHS:
                for job_operation in self.path_operations[job_path].operations:
                    job_operation.include_in_schema = True
        self.operations.append(operation)
        return operation

    def _unique_operation_id(self, plain_id: str) -> str:
        """`plain_id`, or with the first free suffix `_2`, `_3`, ... when an earlier operation of this router has it."""
        return free_operation_id(self.operation_ids, plain_id, plain_id)

    def _make_api_unique(self, view: Callable[..., Any], plain_id: str) -> None:
        """Turn the Ninja operation just added for `view` into one that claims an id unique in its API."""
        # claimed in the router only now: a route Ninja refused takes no id from the later ones
        self.operation_ids.add(view._ninja_operation.operation_id)  # type: ignore[attr-defined]
        claim_api_unique_id(view._ninja_operation, plain_id)  # type: ignore[attr-defined]

    def media_protected(self) -> bool:
        """Whether the router or any of its routes has auth: then every media URL it answers with is signed,
        and its media view serves only signed URLs (pxtserve.media_signing says why all of them)."""
        protected = self._media_protected
        if protected is None:
            routes = [op.auth for op in self.operations if op.auth is not NOT_SET]
            protected = self.auth not in (None, NOT_SET) or any(auth is not None for auth in routes)
            self._media_protected = protected
        return protected

    def describe(self) -> list[dict[str, Any]]:
        return [op.describe() for op in self.operations]

    def operation_for_key(self, key: str) -> Operation | None:
        """This router's operation with the given job route key, if it has one."""
        return next((op for op in self.operations if self.route_key(op) == key), None)

    def route_key(self, operation: Operation) -> str:
        """The mount-independent key by which a job names its route."""
        return registry.route_key(self.name, operation)


def _signature(spec_class: type[RouteSpec], *, table: bool, decorator: bool) -> inspect.Signature:
    """A wrapper's signature from its kind's declaration: `t` (the table), then every field, keyword-only."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    if table:
        params.append(inspect.Parameter("t", inspect.Parameter.POSITIONAL_OR_KEYWORD))
    skipped = {"type", "auth", "response_function", "table"}
    if decorator:
        skipped.add("return_fileresponse")
    for name, info in spec_class.model_fields.items():
        if name in skipped:
            continue
        default = inspect.Parameter.empty if info.is_required() else info.default
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=info.annotation)
        )
    params.append(inspect.Parameter("auth", inspect.Parameter.KEYWORD_ONLY, default=NOT_SET))
    return inspect.Signature(params)


for _method, _spec, _table, _decorator in (
    (PixeltableRouter.add_insert_route, kinds.InsertRoute, True, False),
    (PixeltableRouter.add_update_route, kinds.UpdateRoute, True, False),
    (PixeltableRouter.add_delete_route, kinds.DeleteRoute, True, False),
    (PixeltableRouter.add_query_route, kinds.QueryRoute, False, False),
    (PixeltableRouter.add_compute_route, kinds.ComputeRoute, True, False),
    (PixeltableRouter.insert_route, kinds.InsertRoute, True, True),
    (PixeltableRouter.update_route, kinds.UpdateRoute, True, True),
    (PixeltableRouter.compute_route, kinds.ComputeRoute, True, True),
):
    _method.__signature__ = _signature(_spec, table=_table, decorator=_decorator)  # type: ignore[attr-defined]
