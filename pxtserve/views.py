"""The HTTP side of a route operation: an async Ninja view that validates the
request, runs the operation on the Pixeltable pool and turns the outcome into
a response."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pixeltable as pxt
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Body, File, Form, Query, UploadedFile

from pxtserve import conf, schemas
from pxtserve.auth import check_auth
from pxtserve.errors import ApiError, CallTimedOut, error_response
from pxtserve.executor import get_write_pool, run_in_pool, run_in_pool_with_timeout
from pxtserve.jobs.poll import job_status_async
from pxtserve.jobs.submit import JobRoute, submit_request
from pxtserve.media import MediaUrls, file_response, media_file_response, resolve_media_request
from pxtserve.routes.operation import Operation
from pxtserve.uploads import name_uploads_in_error, remove_files, save_uploads

_PARAM_WRAPPERS = {"body": Body, "query": Query, "form": Form}
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


def make_operation_view(
    operation: Operation, media_url_name: str, job_route: JobRoute | None = None
) -> Callable[..., Any]:
    """The view of a route; with a `job_route` (background routes) it queues the request as a job."""
    serialize = None if operation.returns_file else schemas.json_serializer(operation.response_model)

    async def view(request: HttpRequest, payload: Any = None, **uploads: UploadedFile) -> Any:
        inputs = operation.inputs_from(payload)
        # reversing the media view's URL has a cost: only for responses that can hold media
        media = MediaUrls(request if operation.media_outputs else None, media_url_name)
        try:
            present = {name: upload for name, upload in uploads.items() if upload is not None}
            saved = await run_in_pool(save_uploads, present) if present else {}
        except ApiError as exc:
            return error_response(exc)
        inputs.update({name: str(path) for name, path in saved.items()})
        inputs.update({name: None for name in operation.upload_fields if name not in saved and name not in inputs})
        if job_route is not None:
            return await submit_request(request, job_route, payload, saved, media.base_url)
        try:
            # a write's thread waits for the table's writer: on the write pool, so queries keep theirs
            pool = get_write_pool() if operation.writes else None
            timeout = conf.settings().REQUEST_TIMEOUT
            result = await run_in_pool_with_timeout(timeout, operation.execute, inputs, media, pool=pool)
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
            return file_response(result)
        return HttpResponse(serialize(result), content_type=JSON_CONTENT_TYPE)

    params = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=HttpRequest)]
    model = operation.request_model
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
    view.__name__ = f"{operation.kind}_{operation.path.strip('/').replace('/', '_') or 'root'}"
    return view


def media_view(request: HttpRequest, path: str) -> HttpResponse:
    return media_file_response(request, resolve_media_request(path))


def make_job_status_view(operation_for_key: Callable[[str], Operation | None]) -> Callable[..., Any]:
    """GET <mount>/jobs/{job_id} of one router: only its own routes' jobs (found by their route key), behind each
    route's auth."""

    async def job_status_view(request: HttpRequest, job_id: str) -> HttpResponse:
        found = await job_status_async(job_id)
        operation = operation_for_key(found[0]) if found is not None else None
        if found is None or operation is None:
            return error_response(ApiError(404, "JOB_NOT_FOUND", f"unknown or expired job {job_id!r}"))
        denied = await check_auth(operation.auth, request)
        if denied is not None:
            return denied
        body = found[1]
        response = JsonResponse(body)
        if body["status"] == "pending":
            response["Retry-After"] = "1"
        return response

    return job_status_view
