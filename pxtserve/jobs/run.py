"""Running a job in a django-q2 worker: claim it, run its route as the synchronous route would, record the outcome."""

from __future__ import annotations

import json
import logging
import shutil
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pixeltable as pxt
import pydantic
from django.urls import get_resolver
from django.utils import timezone

from pxtserve import metrics, registry, schemas, tracing
from pxtserve.errors import ApiError, ServiceConfigError, error_body
from pxtserve.jobs.hook import task_finished
from pxtserve.jobs.store import finish, worker_id
from pxtserve.jobs.webhooks import deliver
from pxtserve.media import MediaUrls
from pxtserve.pxt_internals import tmp_file_path
from pxtserve.request_id import bound as bound_request_id
from pxtserve.service import active_service
from pxtserve.uploads import name_uploads_in_error, remove_files

if TYPE_CHECKING:
    from pxtserve.models import Job
    from pxtserve.routes.operation import Operation

_logger = logging.getLogger("pxtserve.jobs")

# tasks queued by earlier versions name their hook "pxtserve.jobs.run.task_finished"
__all__ = ["describe_error", "execute", "find_operation", "run_job", "stage_uploads", "task_finished"]


def run_job(job_id: str) -> str:
    """The django-q task: claim the job, run its route, record the outcome. Never raises but on a timeout."""
    from pxtserve.models import Job

    claimed = Job.objects.filter(pk=job_id, status=Job.Status.PENDING).update(
        status=Job.Status.RUNNING, started_at=timezone.now(), worker=worker_id()
    )
    if not claimed:
        return "skipped"  # a second delivery of a job that ran, runs elsewhere, was cancelled or pruned
    job = Job.objects.get(pk=job_id)
    # the id of the request that made the job: this run's log lines carry it, as the request's did
    with bound_request_id(job.request_id):
        _logger.info("job %s (%s) started on %s", job_id, job.route, job.worker)
        outcome = tracing.run_job(job, _run)  # under a span continuing the submitting request's trace
        metrics.observe_job(job.route, job.started_at)
        _logger.info("job %s (%s) finished: %s", job_id, job.route, outcome)
        if job.webhook_status == Job.WebhookStatus.PENDING:
            deliver(job_id)  # the row is final now; the delivery never changes the job's outcome
    return outcome


def _run(job: Job) -> str:
    """Run a claimed job and record its outcome; the outcome (done, error)."""
    from django_q.exceptions import TimeoutException

    from pxtserve.models import Job

    job_id = job.id
    staged: dict[str, Path] = {}
    try:
        staged = stage_uploads(job.uploads)
        result = execute(job, staged)
    except TimeoutException as exc:
        remove_files(staged.values())
        finish(job_id, Job.Status.ERROR, error=str(exc), error_detail=ApiError(504, "TIMEOUT", str(exc)).to_dict())
        raise  # django-q replaces the worker: the job was interrupted at an arbitrary point
    except Exception as exc:  # noqa: BLE001 - whatever went wrong is the job's outcome, recorded for its client
        remove_files(staged.values())
        message, detail, trace = describe_error(name_uploads_in_error(exc, staged))
        finish(job_id, Job.Status.ERROR, error=message, error_detail=detail, traceback=trace)
        return Job.Status.ERROR
    finish(job_id, Job.Status.DONE, result=result)
    return Job.Status.DONE


def find_operation(route: str, digest: str = "") -> Operation:
    """The operation a job names: from the configured service (PXTSERVE_SERVICE_JSON or settings.PXTSERVE)
    and the routers the site's URLconf mounts."""
    try:
        active_service()
    except ServiceConfigError as exc:
        raise ApiError(500, "SERVICE_NOT_BUILT", f"the worker cannot build the service: {exc}") from exc
    get_resolver().url_patterns  # noqa: B018 - importing the URLconf constructs the routers it mounts
    operation: Operation = registry.find_operation(route, digest)
    return operation


def stage_uploads(kept: dict[str, str]) -> dict[str, Path]:
    """Move a job's uploads into this worker's Pixeltable tmp dir: from there Pixeltable moves them into its store."""
    staged: dict[str, Path] = {}
    try:
        for name, path in kept.items():
            if not Path(path).is_file():
                raise ApiError(500, "UPLOAD_LOST", f"the file uploaded in field {name!r} is no longer available")
            dest = tmp_file_path(Path(path).suffix)
            shutil.move(path, dest)
            staged[name] = dest
    except BaseException:
        remove_files(staged.values())
        raise
    return staged


def execute(job: Job, uploads: dict[str, Path]) -> Any:
    """Run the job's route as the synchronous route would; the response body as JSON values."""
    operation = find_operation(job.route, job.route_digest)
    inputs = operation.inputs_from_stored(job.inputs)
    inputs.update({name: str(uploads[name]) if name in uploads else None for name in operation.upload_fields})
    media = MediaUrls(None, "", base_url=job.media_base_url or None, signed=operation.signs_media())
    result = operation.execute(inputs, media)
    if operation.returns_file:
        raise ApiError(500, "FILE_RESULT", "a background job cannot return a file")
    # exactly the JSON the synchronous route answers with
    return json.loads(schemas.json_serializer(operation.response_model)(result))


def describe_error(exc: Exception) -> tuple[str, dict[str, Any], str]:
    """(message, detail, traceback) of a failed job; message and detail as the synchronous route's error body has them."""
    trace = ""
    if not isinstance(exc, (ApiError, pxt.Error)):
        trace = "".join(traceback.format_exception(exc))
        if isinstance(exc, pydantic.ValidationError):
            exc = ApiError(422, "INVALID_INPUTS", f"the job's stored inputs no longer fit the route: {exc}")
        else:
            _logger.error("background job failed with an unexpected error\n%s", trace)
            exc = ApiError(500, "INTERNAL_ERROR", "internal server error")
    _, body = error_body(exc)
    return str(body["detail"]["message"]), body["detail"], trace
