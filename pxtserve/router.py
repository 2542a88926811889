"""PixeltableRouter: a Ninja router whose routes are Pixeltable operations.

Every entry point (TOML, CLI flags, Python) ends in the add_*_route methods
here; each route kind lives in its own module under pxtserve/routes/.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import pixeltable as pxt
from ninja import Router
from ninja.constants import NOT_SET

from pxtserve import schemas
from pxtserve.errors import RouteDefinitionError
from pxtserve.jobs import JobHandle, JobRoute, JobStatus, route_digest, route_key
from pxtserve.routes.base import RouteOperation
from pxtserve.routes.decorated import RouteFunction, decorated_insert, decorated_update
from pxtserve.routes.delete import build_delete
from pxtserve.routes.insert import build_insert
from pxtserve.routes.query import build_query
from pxtserve.routes.update import build_update
from pxtserve.views import make_job_status_view, make_operation_view, media_view

_router_ids = itertools.count(1)

# every router this process has built, for job workers to find routes in (pxtserve.jobs.find_operation)
_live_routers: weakref.WeakSet[PixeltableRouter] = weakref.WeakSet()

_Function = TypeVar("_Function", bound=RouteFunction)

# path prefixes the router serves itself
RESERVED_PREFIXES = ("/media/", "/jobs/")

# every route may answer these with an ErrorResponse (413: the body limit, 504: REQUEST_TIMEOUT)
_ERROR_STATUSES = (400, 404, 409, 413, 422, 500, 504)
# ... and these in Ninja's own shapes too: a body that is not JSON, a request that does not validate
_NINJA_ERRORS: dict[int, Any] = {
    400: schemas.ErrorResponse | schemas.MessageResponse,
    422: schemas.ErrorResponse | schemas.ValidationErrorResponse,
}


class PixeltableRouter(Router):
    """A `ninja.Router` serving Pixeltable tables and queries.

    Mount it like any router: `api.add_router("/pxt", router)`. Media files
    of its responses are served under `<mount>/media/...`, and background jobs
    are polled under `<mount>/jobs/<id>`.

    `name` qualifies the keys by which job workers find this router's routes
    ("<name>: POST /path"); give one when a process builds several routers
    serving the same method and path differently.
    """

    def __init__(self, *args: Any, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.router_id = next(_router_ids)
        self.name = name
        self.operations: list[RouteOperation] = []
        self.media_url_name = f"pxtserve_media_{self.router_id}"
        self.add_api_operation(
            "/media/{path:path}",
            ["GET", "HEAD"],
            media_view,
            url_name=self.media_url_name,
            operation_id=f"pxtserve_media_{self.router_id}",
            include_in_schema=False,
        )
        self.job_url_name = f"pxtserve_job_{self.router_id}"
        self.add_api_operation(
            "/jobs/{job_id}",
            ["GET"],
            make_job_status_view(self),
            response={200: JobStatus, 404: schemas.ErrorResponse},
            url_name=self.job_url_name,
            operation_id=f"pxtserve_job_status_{self.router_id}",
            summary="Poll a background job",
            # documented once the router has a background route (add_operation)
            include_in_schema=False,
        )
        _live_routers.add(self)

    # --- the route kinds -------------------------------------------------------------

    def add_insert_route(
        self,
        t: pxt.Table | str,
        *,
        path: str,
        inputs: Sequence[str] | None = None,
        uploadfile_inputs: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        return_fileresponse: bool = False,
        export_sql: Any = None,
        background: bool = False,
        auth: Any = NOT_SET,
    ) -> RouteOperation:
        """POST `path` inserts one row into `t` and answers with its `outputs` (computed columns included)."""
        return self.add_operation(
            build_insert(
                t,
                path=path,
                inputs=inputs,
                uploadfile_inputs=uploadfile_inputs,
                outputs=outputs,
                return_fileresponse=return_fileresponse,
                export_sql=export_sql,
                background=background,
            ),
            auth=auth,
        )

    def add_update_route(
        self,
        t: pxt.Table | str,
        *,
        path: str,
        inputs: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        return_fileresponse: bool = False,
        export_sql: Any = None,
        background: bool = False,
        auth: Any = NOT_SET,
    ) -> RouteOperation:
        """POST `path` updates the row with the body's primary key and answers with its `outputs`."""
        return self.add_operation(
            build_update(
                t,
                path=path,
                inputs=inputs,
                outputs=outputs,
                return_fileresponse=return_fileresponse,
                export_sql=export_sql,
                background=background,
            ),
            auth=auth,
        )

    def insert_route(
        self,
        t: pxt.Table | str,
        *,
        path: str,
        inputs: Sequence[str] | None = None,
        uploadfile_inputs: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        export_sql: Any = None,
        background: bool = False,
        auth: Any = NOT_SET,
    ) -> Callable[[_Function], _Function]:
        """Decorator: like add_insert_route, but the body is what the function returns.

        The function takes the `outputs` as keyword-only, annotated parameters (media
        columns as URL strings) and returns an instance of its pydantic return annotation.
        """
        build = decorated_insert(
            t,
            path=path,
            inputs=inputs,
            uploadfile_inputs=uploadfile_inputs,
            outputs=outputs,
            export_sql=export_sql,
            background=background,
        )
        return self._register_decorated(build, auth)

    def update_route(
        self,
        t: pxt.Table | str,
        *,
        path: str,
        inputs: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        export_sql: Any = None,
        background: bool = False,
        auth: Any = NOT_SET,
    ) -> Callable[[_Function], _Function]:
        """Decorator: like add_update_route, but the body is what the function returns (see insert_route)."""
        build = decorated_update(
            t, path=path, inputs=inputs, outputs=outputs, export_sql=export_sql, background=background
        )
        return self._register_decorated(build, auth)

    def _register_decorated(
        self, build: Callable[[RouteFunction], RouteOperation], auth: Any
    ) -> Callable[[_Function], _Function]:
        def decorator(fn: _Function) -> _Function:
            self.add_operation(build(fn), auth=auth)
            return fn

        return decorator

    def add_delete_route(
        self,
        t: pxt.Table | str,
        *,
        path: str,
        match_columns: Sequence[str] | None = None,
        background: bool = False,
        auth: Any = NOT_SET,
    ) -> RouteOperation:
        """POST `path` deletes the rows equal to the body on `match_columns` (default: the primary key)."""
        return self.add_operation(
            build_delete(t, path=path, match_columns=match_columns, background=background), auth=auth
        )

    def add_query_route(
        self,
        *,
        path: str,
        query: Any,
        inputs: Sequence[str] | None = None,
        uploadfile_inputs: Sequence[str] | None = None,
        one_row: bool = False,
        return_fileresponse: bool = False,
        background: bool = False,
        method: Literal["get", "post"] = "post",
        auth: Any = NOT_SET,
    ) -> RouteOperation:
        """`method` `path` runs a @pxt.query function (or a dotted path to one) with the request's arguments."""
        return self.add_operation(
            build_query(
                path=path,
                query=query,
                inputs=inputs,
                uploadfile_inputs=uploadfile_inputs,
                one_row=one_row,
                return_fileresponse=return_fileresponse,
                background=background,
                method=method,
            ),
            auth=auth,
        )

    # --- registration ------------------------------------------------------------------

    def add_operation(self, operation: RouteOperation, *, auth: Any = NOT_SET) -> RouteOperation:
        """Register a built operation as a Ninja operation of this router.

        `auth` is any Ninja auth (or None for a public route); by default the router's own.
        """
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
        openapi_extra: dict[str, Any] | None = None
        if operation.response_model is Path:
            response[502] = schemas.ErrorResponse  # the file is not available locally
            openapi_extra = {
                "responses": {
                    "200": {
                        "description": "The file",
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    }
                }
            }
        elif operation.background:
            response[202] = JobHandle
            response[503] = schemas.ErrorResponse  # the job queue is unavailable
        else:
            response[200] = operation.response_model
        job_route = None
        if operation.background:
            job_route = JobRoute(self.route_key(operation), route_digest(operation), self.job_url_name)
        self.add_api_operation(
            operation.path,
            [operation.method],
            make_operation_view(operation, self.media_url_name, job_route),
            response=response,
            operation_id=f"pxtserve_{self.router_id}_{index}_{operation.kind}",
            url_name=f"pxtserve_{self.router_id}_{index}",
            summary=operation.summary,
            openapi_extra=openapi_extra,
            auth=auth,
        )
        operation.auth = auth
        if operation.background:
            for job_operation in self.path_operations["/jobs/{job_id}"].operations:
                job_operation.include_in_schema = True
        self.operations.append(operation)
        return operation

    def describe(self) -> list[dict[str, Any]]:
        return [op.describe() for op in self.operations]

    def operation_for_key(self, key: str) -> RouteOperation | None:
        """This router's operation with the given job route key, if it has one."""
        return next((op for op in self.operations if self.route_key(op) == key), None)

    def route_key(self, operation: RouteOperation) -> str:
        """The mount-independent key by which a job names its route."""
        return route_key(self.name, operation)


def live_routers() -> list[PixeltableRouter]:
    """The routers this process has built and still holds, oldest first."""
    return sorted(_live_routers, key=lambda router: router.router_id)
