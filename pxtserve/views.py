"""The HTTP side of a route operation: an async Ninja view that validates the
request, runs the operation on the Pixeltable pool and turns the outcome into
a response."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pixeltable as pxt
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Body, File, Form, Query, UploadedFile

from pxtserve import conf, schemas
from pxtserve.auth import check_auth
from pxtserve.errors import ApiError, CallTimedOut, error_response
from pxtserve.executor import get_write_pool, run_in_pool, run_in_pool_with_timeout
from pxtserve.inline_reads import CallTime, run_read
from pxtserve.intake import DISCONNECTED_ATTRIBUTE, LIGHT_VIEW_ATTRIBUTE, is_json, unsupported_media_type
from pxtserve.jobs.control import cancel_body
from pxtserve.jobs.listing import JobListQuery, list_jobs
from pxtserve.jobs.poll import job_status_async
from pxtserve.jobs.submit import JobRoute, job_url, submit_request
from pxtserve.media import MediaUrls, resolve_media_request
from pxtserve.media_response import file_response, media_file_response, run_on_reader
from pxtserve.media_signing import media_access_denied, media_check_needed
from pxtserve.routes.operation import Operation
from pxtserve.uploads import name_uploads_in_error, remove_files, save_uploads

_PARAM_WRAPPERS = {"body": Body, "query": Query, "form": Form}
OperationForKey = Callable[[str], Operation | None]
# what Ninja's JSON renderer answers with
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def _timeout_error(operation: Operation, started: bool) -> ApiError:
    limit = conf.settings().REQUEST_TIMEOUT or 0.0
    if not started:
        return ApiError(
            504, "REQUEST_TIMEOUT", f"{operation.display_name} waited {limit:g} s for a worker thread; nothing was done"
        )
    what = "it may still complete" if operation.writes else "its result is discarded"
    return ApiError(
        504,
        "REQUEST_TIMEOUT",
        f"{operation.display_name} did not finish within {limit:g} s (REQUEST_TIMEOUT); {what}. "
        "Use background = true for long-running work",
    )


def _signs_media(operation: Operation, request: HttpRequest) -> bool:
    """A protected router's media URLs are signed; so are those of a route some inherited auth (a mount's, a
    NinjaAPI's) let the request through."""
    return operation.signs_media() or getattr(request, "auth", None) is not None


def make_operation_view(
    operation: Operation, media_url_name: str, job_route: JobRoute | None = None
) -> Callable[..., Any]:
    """The view of a route; with a `job_route` (background routes) it queues the request as a job."""
    serialize = None if operation.returns_file else schemas.json_serializer(operation.response_model)
    model = operation.request_model
    json_body = operation.input_location == "body" and model is not None and bool(model.model_fields)
    # the only wait of such a view is its Pixeltable call: no uploads, job, file to stream or idempotency record
    light = not (operation.upload_fields or job_route or operation.returns_file or operation.changes_data)
    # reads that may run on the loop's thread (pxtserve.inline_reads)
    inline = light and operation.inline_reads
    call_time = CallTime() if inline else None

    async def view(request: HttpRequest, payload: Any = None, **uploads: UploadedFile) -> Any:
        if json_body and not is_json(request.content_type or ""):
            # pxtserve's ASGI handler answers this from the head (pxtserve.intake); this is for Django's own
            # handlers (a site's WSGI server, `include("pxtserve.urls")`), where Ninja has parsed the body by now
            return error_response(unsupported_media_type(request))
        inputs = operation.inputs_from(payload)
        # reversing the media view's URL has a cost: only for responses that can hold media
        media = MediaUrls(
            request if operation.media_outputs else None, media_url_name, signed=_signs_media(operation, request)
        )
        try:
            present = {name: upload for name, upload in uploads.items() if upload is not None}
            saved = await run_in_pool(save_uploads, present) if present else {}
        except ApiError as exc:
            return error_response(exc)
        inputs.update({name: str(path) for name, path in saved.items()})
        inputs.update({name: None for name in operation.upload_fields if name not in saved and name not in inputs})
        if job_route is not None:
            return await submit_request(request, job_route, payload, saved, media.base_url)
        # pxtserve's ASGI handler leaves a disconnect listener to this call when the view waits for nothing else
        disconnected = getattr(request, DISCONNECTED_ATTRIBUTE, None) if light else None
        try:
            timeout = conf.settings().REQUEST_TIMEOUT
            if call_time is not None:
                result = await run_read(call_time, timeout, operation.execute, inputs, media, disconnected=disconnected)
            else:
                # a write's thread waits for the table's writer: on the write pool, so queries keep theirs
                pool = get_write_pool() if operation.writes else None
                result = await run_in_pool_with_timeout(
                    timeout, operation.execute, inputs, media, pool=pool, disconnected=disconnected
                )
        except CallTimedOut as exc:
            if not exc.started:
                remove_files(saved.values())
            return error_response(_timeout_error(operation, exc.started))
        except (ApiError, pxt.Error) as exc:
            remove_files(saved.values())
            return error_response(name_uploads_in_error(exc, saved))
        except BaseException:
            remove_files(saved.values())
            raise
        if serialize is None:  # a file route: the result is the file's path
            return await file_response(result)
        return HttpResponse(serialize(result), content_type=JSON_CONTENT_TYPE)

    params = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=HttpRequest)]
    if model is not None and model.model_fields:
        wrapper = _PARAM_WRAPPERS[operation.input_location]
        params.append(
            inspect.Parameter("payload", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=wrapper[model])  # type: ignore[index]
        )
    for name in operation.upload_fields:
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=File[UploadedFile],  # type: ignore[misc]
                default=None if name in operation.optional_uploads else inspect.Parameter.empty,
            )
        )
    view.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    setattr(view, LIGHT_VIEW_ATTRIBUTE, light)
    view.__name__ = f"{operation.kind}_{operation.path.strip('/').replace('/', '_') or 'root'}"
    return view


def make_media_view(is_protected: Callable[[], bool]) -> Callable[..., Any]:
    """GET/HEAD <mount>/media/{path}: a file of the media store; on a protected router only with a signed URL
    (or credentials its inherited auth accepts: pxtserve.media_signing), checked before the path is resolved."""

    async def media_view(request: HttpRequest, path: str) -> HttpResponse:
        if media_check_needed(request, is_protected()):
            denied = media_access_denied(request, path)
            if denied is not None:
                return denied
        return await media_file_response(request, await run_on_reader(resolve_media_request, path))

    return media_view


async def _authorized_job(
    request: HttpRequest, job_id: str, operation_for_key: OperationForKey
) -> tuple[dict[str, Any], None] | tuple[None, HttpResponse]:
    """The job's poll body when it is one of this router's and the request passes its route's auth; else the error
    answer (404 for another router's job, as for an unknown one)."""
    found = await job_status_async(job_id)
    operation = operation_for_key(found[0]) if found is not None else None
    if found is None or operation is None:
        return None, error_response(ApiError(404, "JOB_NOT_FOUND", f"unknown or expired job {job_id!r}"))
    denied = await check_auth(operation.auth, request)
    if denied is not None:
        return None, denied
    return found[1], None


def _status_response(body: dict[str, Any]) -> JsonResponse:
    response = JsonResponse(body)
    if body["status"] in ("pending", "running"):
        response["Retry-After"] = "1"
    return response


def make_job_status_view(operation_for_key: OperationForKey) -> Callable[..., Any]:
    """GET <mount>/jobs/{job_id} of one router: only its own routes' jobs (found by their route key), behind each
    route's auth."""

    async def job_status_view(request: HttpRequest, job_id: str) -> HttpResponse:
        body, denied = await _authorized_job(request, job_id, operation_for_key)
        return denied if body is None else _status_response(body)

    return job_status_view


def make_job_cancel_view(operation_for_key: OperationForKey) -> Callable[..., Any]:
    """POST <mount>/jobs/{job_id}/cancel: the same jobs and auth as the poll; answers the new poll body."""

    async def job_cancel_view(request: HttpRequest, job_id: str) -> HttpResponse:
        body, denied = await _authorized_job(request, job_id, operation_for_key)
        if body is None:
            return denied
        try:
            body = await sync_to_async(cancel_body, thread_sensitive=False)(job_id)
        except ApiError as exc:
            return error_response(exc)
        return _status_response(body)

    return job_cancel_view


def make_job_list_view(
    operations: Callable[[], list[Operation]], route_key: Callable[[Operation], str], job_url_name: str
) -> Callable[..., Any]:
    """GET <mount>/jobs: the jobs of this router's routes whose auth the request passes, newest first, paged."""

    async def job_list_view(request: HttpRequest, query: Query[JobListQuery]) -> HttpResponse:  # type: ignore[type-arg]
        keys = [route_key(op) for op in operations() if await check_auth(op.auth, request) is None]

        def url(job_id: str) -> str:
            return job_url(request, job_url_name, job_id)

        try:
            body = await sync_to_async(list_jobs, thread_sensitive=False)(keys, query, url)
        except ApiError as exc:
            return error_response(exc)
        return JsonResponse(body)

    return job_list_view
