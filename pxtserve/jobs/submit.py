"""Submitting a background request: its job row written, its task queued, 202 with the poll URL."""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from pxtserve import conf, tracing
from pxtserve.errors import ApiError, TooManyPendingJobs, error_response
from pxtserve.executor import run_in_pool
from pxtserve.jobs.queue import enqueue, sync_mode
from pxtserve.jobs.recovery import maybe_prune
from pxtserve.jobs.store import db_connection, job_upload_dir
from pxtserve.jobs.webhooks import pending_fields
from pxtserve.request_id import current as current_request_id
from pxtserve.uploads import remove_files

_logger = logging.getLogger("pxtserve.jobs")


@dataclass(frozen=True)
class JobRoute:
    """What a background route's view needs to submit a job: the route's key and where jobs are polled."""

    route: str
    digest: str
    job_url_name: str
    # the route's webhook_url: its jobs' final statuses are delivered there (pxtserve.jobs.webhooks)
    webhook_url: str | None = None


async def submit_request(
    request: HttpRequest, job_route: JobRoute, payload: Any, uploads: dict[str, Path], media_base_url: str | None
) -> HttpResponse:
    """Persist and queue a background request; 202 with the job id and its absolute poll URL."""
    inputs = dump_inputs(payload)
    # read here, in the request's context, and passed on: submit() runs on a thread
    args = (job_route.route, job_route.digest, inputs, uploads, media_base_url, current_request_id())
    webhook = {"webhook_url": job_route.webhook_url}
    try:
        check_input_size(inputs)
        if sync_mode():
            # django-q2's sync mode runs the job inside async_task: a Pixeltable call, so on the Pixeltable pool
            job_id = await run_in_pool(submit, *args, **webhook)
        else:
            job_id = await sync_to_async(submit, thread_sensitive=False)(*args, **webhook)
    except ApiError as exc:
        remove_files(uploads.values())  # still in the tmp dir when refused before keep_uploads moved them
        response = error_response(exc)
        if isinstance(exc, TooManyPendingJobs):
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return JsonResponse({"id": job_id, "job_url": job_url(request, job_route.job_url_name, job_id)}, status=202)


# what a client refused for too many pending jobs is told to wait: about what a worker takes for a few jobs
RETRY_AFTER_SECONDS = 10


def check_input_size(inputs: dict[str, Any]) -> None:
    """A job keeps its JSON inputs for JOB_RETENTION_SECONDS: bounded (uploads are, by MAX_UPLOAD_SIZE)."""
    limit = conf.settings().MAX_JOB_INPUT_BYTES
    size = len(json.dumps(inputs, cls=DjangoJSONEncoder).encode())
    if size > limit:
        raise ApiError(
            413,
            "JOB_INPUTS_TOO_LARGE",
            f"the job's inputs are {size} bytes of JSON; the limit is {limit} (MAX_JOB_INPUT_BYTES)",
        )


def check_pending_quota() -> None:
    """429 beyond MAX_PENDING_JOBS pending jobs (every route's). Counted before the job is written, so concurrent
    submissions may pass the limit by as many as submit at once."""
    from pxtserve.models import Job

    limit = conf.settings().MAX_PENDING_JOBS
    if Job.objects.filter(status=Job.Status.PENDING).count() >= limit:
        raise TooManyPendingJobs(limit)


def dump_inputs(payload: Any) -> dict[str, Any]:
    """The validated request as JSON: only the fields the client set, so validating it again restores the request."""
    return {} if payload is None else payload.model_dump(mode="json", exclude_unset=True)


def job_url(request: HttpRequest, url_name: str, job_id: str) -> str:
    """The job's absolute URL, reversed in the request's URL namespace so it is right under any mount prefix."""
    namespace = request.resolver_match.namespace if request.resolver_match else ""
    name = f"{namespace}:{url_name}" if namespace else url_name
    return request.build_absolute_uri(reverse(name, kwargs={"job_id": job_id}))


def submit(
    route: str,
    digest: str,
    inputs: dict[str, Any],
    uploads: dict[str, Path],
    media_base_url: str | None,
    request_id: str | None = None,
    *,
    webhook_url: str | None = None,
    retry_of: str = "",
) -> str:
    """Write the job row, then queue its task; a queue that refuses it is a 503 and leaves no job behind.

    `retry_of`: the failed job this one submits again (the admin's retry).
    """
    from pxtserve.models import Job

    with db_connection():
        maybe_prune()
        check_pending_quota()
        kept = keep_uploads(uploads)
        try:
            job = Job.objects.create(
                route=route,
                route_digest=digest,
                inputs=inputs,
                uploads=kept,
                media_base_url=media_base_url or "",
                request_id=request_id or "",
                retry_of=retry_of,
                **pending_fields(webhook_url),
                # in the request's context still (copied to this thread): the worker continues its trace
                trace_context=tracing.context_carrier(),
            )
        except BaseException:
            remove_files(kept.values())
            raise
        try:
            enqueue(job.id)
        except Exception as exc:
            _logger.exception("job %s: cannot queue its task", job.id)
            Job.objects.filter(pk=job.id).delete()
            remove_files(kept.values())
            raise ApiError(503, "JOB_QUEUE_UNAVAILABLE", "the job queue is not available; try again later") from exc
    return job.id


def keep_uploads(uploads: dict[str, Path]) -> dict[str, str]:
    """Move a request's uploads out of this process's Pixeltable tmp dir, which Pixeltable clears after a restart."""
    if not uploads:
        return {}
    directory = job_upload_dir()
    directory.mkdir(parents=True, exist_ok=True)
    kept: dict[str, str] = {}
    try:
        for name, path in uploads.items():
            dest = directory / f"{uuid.uuid4().hex}{path.suffix}"
            shutil.move(path, dest)
            kept[name] = str(dest)
    except BaseException:
        remove_files([*kept.values(), *uploads.values()])
        raise
    return kept
