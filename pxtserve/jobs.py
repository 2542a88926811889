"""Background jobs: a request accepted at once, run by a django-q2 worker, polled at its job URL.

A background request becomes a `Job` row (route, validated inputs, media base
URL) before it is answered; the django-q task carries only the job id. A worker
finds the route again by its key (see `find_operation`), runs it, and writes
the outcome to the row. Because the row, not the queue, is the record, a restart
can tell what was lost: `recover_jobs` requeues pending jobs whose task is
gone from the broker and fails running jobs whose worker is gone. A job runs
once however often its task is delivered: the run claims it (pending ->
running) first.

Route keys: "<METHOD> <path>", prefixed with "<name>: " for a
`PixeltableRouter(name=...)` (a service's router is named after the service),
independent of where the router is mounted. Two
unnamed routers in one process may serve the same method and path; the job
also records a digest of the route's declaration (`route_digest`), which tells
them apart, and routers declared identically are interchangeable. Construction
order is not used: a worker constructs routers in a different order than the
web process (service first, then the URLconf).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pydantic
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone

from pxtserve import conf
from pxtserve.errors import ApiError

if TYPE_CHECKING:
    from pxtserve.models import Job
    from pxtserve.routes.base import RouteOperation

_logger = logging.getLogger(__name__)

TASK_FUNC = "pxtserve.jobs.run_job"
TASK_HOOK = "pxtserve.jobs.task_finished"
INTERRUPTED = (
    "interrupted by a restart: the worker running this job stopped before it finished; "
    "its write may or may not have been committed, so check before submitting it again"
)
# a running job this much older than the task timeout has lost its worker
_TIMEOUT_MARGIN = timedelta(seconds=60)
# pruning runs on start and at most this often per process while jobs are submitted
_PRUNE_INTERVAL_S = 600.0


class JobHandle(pydantic.BaseModel):
    id: str
    job_url: str


class JobStatus(pydantic.BaseModel):
    status: Literal["pending", "done", "error"]
    result: Any = None
    error: str | None = None
    error_detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class JobRoute:
    """What a background route's view needs to submit a job: the route's key and where jobs are polled."""

    route: str
    digest: str
    job_url_name: str


def route_key(router_name: str | None, operation: RouteOperation) -> str:
    key = f"{operation.method} {operation.path}"
    return f"{router_name}: {key}" if router_name else key


def route_digest(operation: RouteOperation) -> str:
    """A digest of everything that declares the route: equal digests mean interchangeable operations."""
    text = json.dumps(operation.describe(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_operation(route: str, digest: str = "") -> RouteOperation:
    """The operation a job names, among the routers this process has built.

    Builds the configured service (PXTSERVE_SERVICE_JSON or settings.PXTSERVE)
    and loads the site's URLconf, so routers mounted by Python code exist too.
    """
    from django.urls import get_resolver

    from pxtserve.router import live_routers
    from pxtserve.service import ServiceConfigError, active_service

    try:
        active_service()
    except ServiceConfigError as exc:
        raise ApiError(500, "SERVICE_NOT_BUILT", f"the worker cannot build the service: {exc}") from exc
    get_resolver().url_patterns  # noqa: B018 - importing the URLconf constructs the routers it mounts
    matches = [op for router in live_routers() for op in router.operations if router.route_key(op) == route]
    if len({route_digest(op) for op in matches}) > 1:
        matches = [op for op in matches if route_digest(op) == digest]
        if not matches:
            raise ApiError(
                500,
                "ROUTE_AMBIGUOUS",
                f"several routers serve {route}, none declared as when the job was submitted; "
                "give the routers names: PixeltableRouter(name=...)",
            )
    if not matches:
        raise ApiError(500, "ROUTE_NOT_SERVED", f"{route} is not served by this service's configuration any more")
    return matches[0]


# --- submitting ------------------------------------------------------------------------------


async def submit_request(
    request: HttpRequest, job_route: JobRoute, payload: Any, uploads: dict[str, Path], media_base_url: str | None
) -> HttpResponse:
    """Persist and queue a background request; 202 with the job id and its absolute poll URL."""
    from asgiref.sync import sync_to_async

    from pxtserve.errors import error_response

    args = (job_route.route, job_route.digest, dump_inputs(payload), uploads, media_base_url)
    try:
        if _sync_mode():
            # django-q2's sync mode runs the job inside async_task: a Pixeltable call, so on the Pixeltable pool
            from pxtserve.executor import run_in_pool

            job_id = await run_in_pool(submit, *args)
        else:
            job_id = await sync_to_async(submit, thread_sensitive=False)(*args)
    except ApiError as exc:
        return error_response(exc)
    return JsonResponse({"id": job_id, "job_url": job_url(request, job_route.job_url_name, job_id)}, status=202)


def dump_inputs(payload: Any) -> dict[str, Any]:
    """The validated request as JSON: only the fields the client set, so validating it again restores the request."""
    return {} if payload is None else payload.model_dump(mode="json", exclude_unset=True)


def load_inputs(operation: RouteOperation, stored: dict[str, Any], uploads: dict[str, Path]) -> dict[str, Any]:
    """The operation's inputs, as the synchronous view would pass them, from a job's stored request."""
    from pxtserve.views import operation_inputs

    model = operation.request_model
    inputs = (
        operation_inputs(operation, model.model_validate(stored)) if model is not None and model.model_fields else {}
    )
    inputs.update({name: str(uploads[name]) if name in uploads else None for name in operation.upload_fields})
    return inputs


def job_url(request: HttpRequest, url_name: str, job_id: str) -> str:
    """The job's absolute URL, reversed in the request's URL namespace so it is right under any mount prefix."""
    namespace = request.resolver_match.namespace if request.resolver_match else ""
    name = f"{namespace}:{url_name}" if namespace else url_name
    return request.build_absolute_uri(reverse(name, kwargs={"job_id": job_id}))


def submit(
    route: str, digest: str, inputs: dict[str, Any], uploads: dict[str, Path], media_base_url: str | None
) -> str:
    """Write the job row, then queue its task; a queue that refuses it is a 503 and leaves no job behind."""
    from pxtserve.models import Job

    kept = keep_uploads(uploads)
    with _db_connection():
        maybe_prune()
        try:
            job = Job.objects.create(
                route=route, route_digest=digest, inputs=inputs, uploads=kept, media_base_url=media_base_url or ""
            )
        except BaseException:
            _remove_files(kept.values())
            raise
        try:
            enqueue(job.id)
        except Exception as exc:
            _logger.exception("job %s: cannot queue its task", job.id)
            Job.objects.filter(pk=job.id).delete()
            _remove_files(kept.values())
            raise ApiError(503, "JOB_QUEUE_UNAVAILABLE", "the job queue is not available; try again later") from exc
    return job.id


def enqueue(job_id: str) -> None:
    from django_q.tasks import async_task

    from pxtserve.models import Job

    task_id = async_task(TASK_FUNC, job_id, hook=TASK_HOOK, ack_failure=True, task_name=f"pxtserve-job-{job_id}")
    # update(), not save(): the worker may already have claimed the row
    Job.objects.filter(pk=job_id).update(task_id=task_id or "")


def job_upload_dir() -> Path:
    configured = conf.get("JOB_UPLOAD_DIR")
    if configured is not None:
        return Path(configured)
    from pxtserve.media import media_roots

    home, _ = media_roots()
    return home / "pxtserve_job_uploads"


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
        _remove_files([*kept.values(), *uploads.values()])
        raise
    return kept


def stage_uploads(kept: dict[str, str]) -> dict[str, Path]:
    """Move a job's uploads into this worker's Pixeltable tmp dir: from there Pixeltable moves them into its store."""
    from pixeltable.utils.local_store import TempStore  # no public way to get a path in Pixeltable's tmp store

    staged: dict[str, Path] = {}
    try:
        for name, path in kept.items():
            if not Path(path).is_file():
                raise ApiError(500, "UPLOAD_LOST", f"the file uploaded in field {name!r} is no longer available")
            dest = Path(TempStore.create_path(extension=Path(path).suffix))
            shutil.move(path, dest)
            staged[name] = dest
    except BaseException:
        _remove_files(staged.values())
        raise
    return staged


def _remove_files(paths: Any) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


# --- running ---------------------------------------------------------------------------------


def run_job(job_id: str) -> str:
    """The django-q task: claim the job, run its route, record the outcome. Never raises but on a timeout."""
    from django_q.exceptions import TimeoutException

    from pxtserve.models import Job

    claimed = Job.objects.filter(pk=job_id, status=Job.Status.PENDING).update(
        status=Job.Status.RUNNING, started_at=timezone.now(), worker=_worker_id()
    )
    if not claimed:
        return "skipped"  # a second delivery of a job that ran, runs elsewhere, or was pruned
    job = Job.objects.get(pk=job_id)
    staged: dict[str, Path] = {}
    try:
        staged = stage_uploads(job.uploads)
        result = execute(job, staged)
    except TimeoutException as exc:
        _remove_files(staged.values())
        _finish(job_id, Job.Status.ERROR, error=str(exc), error_detail={"error_code": "TIMEOUT", "message": str(exc)})
        raise  # django-q replaces the worker: the job was interrupted at an arbitrary point
    except Exception as exc:  # noqa: BLE001 - whatever went wrong is the job's outcome, recorded for its client
        from pxtserve.uploads import name_uploads_in_error

        _remove_files(staged.values())
        message, detail, trace = describe_error(name_uploads_in_error(exc, staged))
        _finish(job_id, Job.Status.ERROR, error=message, error_detail=detail, traceback=trace)
        return Job.Status.ERROR
    _finish(job_id, Job.Status.DONE, result=result)
    return Job.Status.DONE


def execute(job: Job, uploads: dict[str, Path]) -> Any:
    """Run the job's route as the synchronous route would; the response body as JSON values."""
    from pxtserve.media import MediaUrls

    operation = find_operation(job.route, job.route_digest)
    inputs = load_inputs(operation, job.inputs, uploads)
    result = operation.execute(inputs, MediaUrls(None, "", base_url=job.media_base_url or None))
    if isinstance(result, Path):
        raise ApiError(500, "FILE_RESULT", "a background job cannot return a file")
    return response_json(operation, result)


def response_json(operation: RouteOperation, result: Any) -> Any:
    """The body as Ninja would send it: validated by the route's response model, encoded by Ninja's encoder."""
    import pydantic
    from ninja.responses import NinjaJSONEncoder

    if operation.response_model is not None:
        adapter = pydantic.TypeAdapter(operation.response_model)
        result = adapter.dump_python(adapter.validate_python(result))
    return json.loads(json.dumps(result, cls=NinjaJSONEncoder))


def describe_error(exc: Exception) -> tuple[str, dict[str, Any], str]:
    """(message, detail, traceback) of a failed job; message and detail as the synchronous route's error body has them."""
    import pixeltable as pxt
    import pydantic

    if isinstance(exc, (ApiError, pxt.Error)):
        detail = exc.to_dict()
        return str(detail["message"]), detail, ""
    trace = "".join(traceback.format_exception(exc))
    if isinstance(exc, pydantic.ValidationError):
        message = f"the job's stored inputs no longer fit the route: {exc}"
        return message, {"error_code": "INVALID_INPUTS", "message": message}, trace
    _logger.error("background job failed with an unexpected error\n%s", trace)
    message = "internal server error"
    return message, {"error_code": "INTERNAL_ERROR", "message": message}, trace


def _finish(job_id: str, status: str, **fields: Any) -> None:
    from pxtserve.models import Job

    Job.objects.filter(pk=job_id).update(status=status, finished_at=timezone.now(), **fields)


def task_finished(task: Any) -> None:
    """django-q's hook: a task that failed before recording its outcome (a crash, a timeout) fails its job."""
    from pxtserve.models import Job

    if task.success or not task.args:
        return
    message = str(task.result or "the worker failed").split(" : ", 1)[0]
    Job.objects.filter(pk=task.args[0], status__in=[Job.Status.PENDING, Job.Status.RUNNING]).update(
        status=Job.Status.ERROR,
        finished_at=timezone.now(),
        error=message,
        error_detail={"error_code": "WORKER_FAILED", "message": message},
        traceback=str(task.result or ""),
    )


# --- polling ---------------------------------------------------------------------------------


async def job_status_async(job_id: str) -> tuple[str, dict[str, Any]] | None:
    from asgiref.sync import sync_to_async

    return await sync_to_async(job_status, thread_sensitive=False)(job_id)


def job_status(job_id: str) -> tuple[str, dict[str, Any]] | None:
    """The job's route key and its poll answer, or None for an unknown (or pruned) job."""
    from pxtserve.models import Job

    with _db_connection():
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            return None
        if job.status == Job.Status.RUNNING and _lost_worker(job, timezone.now()):
            _fail_interrupted(Job.objects.filter(pk=job.pk))
            job.refresh_from_db()
    return job.route, status_body(job)


def status_body(job: Job) -> dict[str, Any]:
    if job.status == job.Status.DONE:
        return {"status": "done", "result": job.result}
    if job.status == job.Status.ERROR:
        return {"status": "error", "error": job.error, "error_detail": job.error_detail}
    return {"status": "pending"}


# --- restarts and retention --------------------------------------------------------------------


def recover_jobs(cluster_started_at: datetime | None = None) -> dict[str, int]:
    """After a (re)start: fail running jobs whose worker is gone, requeue pending jobs that no queued task will run.

    A task a cluster took from the queue is lost if that cluster died; with the
    ORM broker, one taken since `cluster_started_at` (the cluster recovering)
    counts as alive. A requeued job whose task was alive after all runs once:
    the first task to claim it (pending -> running) runs it, the other finds it
    claimed.
    """
    from pxtserve.models import Job

    with _db_connection():
        now = timezone.now()
        running = Job.objects.filter(status=Job.Status.RUNNING).only("id", "worker", "started_at")
        lost = [job.pk for job in running if _lost_worker(job, now)]
        interrupted = _fail_interrupted(Job.objects.filter(pk__in=lost)) if lost else 0
        queued = queued_task_ids(taken_since=cluster_started_at)
        requeued = 0
        for job in Job.objects.filter(status=Job.Status.PENDING).only("id", "task_id").order_by("submitted_at"):
            if queued is not None and job.task_id and job.task_id in queued:
                continue
            enqueue(job.pk)
            requeued += 1
    if interrupted or requeued:
        _logger.info("jobs after a restart: %d requeued, %d interrupted", requeued, interrupted)
    return {"requeued": requeued, "interrupted": interrupted}


def queued_task_ids(taken_since: datetime | None = None) -> set[str] | None:
    """Ids of the tasks waiting in the broker, and (ORM broker) of those a cluster took since `taken_since`.

    None when the broker cannot list its tasks.
    """
    from django_q.brokers import get_broker
    from django_q.brokers.orm import ORM
    from django_q.conf import Conf

    broker = get_broker()
    if isinstance(broker, ORM):
        now = timezone.now()
        # a task taken from the queue is locked until RETRY seconds after it was taken
        taken_after = None if taken_since is None else taken_since + timedelta(seconds=Conf.RETRY)
        rows = broker.get_connection().filter(key=broker.list_key)
        return {
            row.task_id()
            for row in rows
            if row.lock is None or row.lock <= now or (taken_after is not None and row.lock >= taken_after)
        }
    try:
        from django_q.brokers.redis_broker import Redis
    except ImportError:  # no redis package: not the broker in use
        return None
    if isinstance(broker, Redis):
        from django_q.signing import SignedPackage

        return {SignedPackage.loads(p).get("id") for p in broker.connection.lrange(broker.list_key, 0, -1)}
    return None


def prune_jobs() -> int:
    """Delete finished jobs older than JOB_RETENTION_SECONDS."""
    from pxtserve.models import Job

    cutoff = timezone.now() - timedelta(seconds=float(conf.get("JOB_RETENTION_SECONDS")))
    with _db_connection():
        expired = Job.objects.filter(status__in=[Job.Status.DONE, Job.Status.ERROR], finished_at__lt=cutoff)
        # a job that failed before a worker took its uploads leaves them behind
        for uploads in expired.values_list("uploads", flat=True):
            _remove_files((uploads or {}).values())
        deleted, _ = expired.delete()
    return deleted


_last_prune = 0.0
_prune_lock = threading.Lock()


def maybe_prune() -> None:
    global _last_prune
    with _prune_lock:
        now = time.monotonic()
        if _last_prune and now - _last_prune < _PRUNE_INTERVAL_S:
            return
        _last_prune = now
    prune_jobs()


def start_up(cluster_started_at: datetime | None = None) -> dict[str, int]:
    """What `serve` (and each worker as it starts) does about jobs left by an earlier run."""
    counts = recover_jobs(cluster_started_at)
    counts["pruned"] = prune_jobs()
    return counts


def _lost_worker(job: Job, now: Any) -> bool:
    """Whether a running job's worker is gone: a dead process on this host, or a run longer than the task timeout."""
    host, _, pid = job.worker.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
        return True
    from django_q.conf import Conf

    if not Conf.TIMEOUT or job.started_at is None:
        return False
    return now - job.started_at > timedelta(seconds=Conf.TIMEOUT) + _TIMEOUT_MARGIN


def _fail_interrupted(jobs: Any) -> int:
    from pxtserve.models import Job

    return jobs.filter(status=Job.Status.RUNNING).update(
        status=Job.Status.ERROR,
        finished_at=timezone.now(),
        error=INTERRUPTED,
        error_detail={"error_code": "INTERRUPTED", "message": INTERRUPTED},
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _sync_mode() -> bool:
    from django_q.conf import Conf

    return bool(Conf.SYNC)


@contextmanager
def _db_connection() -> Iterator[None]:
    """Django's connections are per thread; outside a request nothing closes them, so do it here."""
    close_old_connections()
    try:
        yield
    finally:
        close_old_connections()
