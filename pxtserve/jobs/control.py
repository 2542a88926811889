"""Changing a job from outside its run: cancelling a pending one (clients, the admin), retrying a failed one (the admin).

Cancelling is one conditional update (pending -> cancelled), the same kind the run's
claim is (pending -> running), so exactly one of them wins: a cancelled job never runs,
even when its task is already queued (the task finds it claimed and skips it). A running
job cannot be interrupted: Pixeltable offers no way to stop a call half done.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from pxtserve.errors import ApiError
from pxtserve.jobs.queue import enqueue_delivery
from pxtserve.jobs.store import db_connection, job_upload_dir, status_body
from pxtserve.jobs.submit import submit
from pxtserve.uploads import remove_files

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pxtserve.models import Job

_logger = logging.getLogger("pxtserve.jobs")


def cancel(job_id: str) -> Job:
    """Cancel a pending job: it never runs, its uploads are removed. 404 unknown, 409 running or finished."""
    from pxtserve.models import Job

    with db_connection():
        cancelled = Job.objects.filter(pk=job_id, status=Job.Status.PENDING).update(
            status=Job.Status.CANCELLED, finished_at=timezone.now()
        )
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            raise ApiError(404, "JOB_NOT_FOUND", f"unknown or expired job {job_id!r}")
        if not cancelled:
            if job.status == Job.Status.RUNNING:
                raise ApiError(
                    409, "JOB_RUNNING", f"job {job_id} is running and cannot be interrupted; poll it until it finishes"
                )
            raise ApiError(409, "JOB_FINISHED", f"job {job_id} has already finished ({job.status}); nothing to cancel")
        remove_files((job.uploads or {}).values())
        _logger.info("job %s (%s) cancelled", job_id, job.route)
        if job.webhook_status == Job.WebhookStatus.PENDING:
            enqueue_delivery(job_id)
    return job


def cancel_body(job_id: str) -> dict[str, Any]:
    """Cancel the job; its poll body."""
    return status_body(cancel(job_id))


@dataclass
class Report:
    """What an admin action did to each selected job."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def cancel_jobs(jobs: Iterable[Job]) -> Report:
    report = Report()
    for job in jobs:
        try:
            cancel(job.id)
        except ApiError as exc:
            report.skipped.append(f"{job.id}: {exc.message}")
        else:
            report.done.append(job.id)
    return report


def _copy_uploads(job: Job) -> tuple[dict[str, Path], list[str]]:
    """Copies of a job's uploads that are still present (the original stays the old job's), and the missing fields."""
    copies: dict[str, Path] = {}
    missing = [name for name, path in (job.uploads or {}).items() if not Path(path).is_file()]
    if missing:
        return {}, missing
    directory = job_upload_dir()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        for name, path in (job.uploads or {}).items():
            copy = directory / f"{uuid.uuid4().hex}{Path(path).suffix}"
            shutil.copyfile(path, copy)
            copies[name] = copy
    except BaseException:
        remove_files(copies.values())
        raise
    return copies, []


def retry(job: Job) -> str:
    """Submit a failed job again, as a new job: same route, inputs and uploads. The new job's id.

    409 when the job has not failed, or its uploads are gone (a worker hands them to Pixeltable as the job starts).
    """
    from pxtserve.models import Job

    if job.status != Job.Status.ERROR:
        raise ApiError(409, "JOB_NOT_FAILED", f"only failed jobs are retried, this one is {job.status}")
    uploads, missing = _copy_uploads(job)
    if missing:
        raise ApiError(409, "UPLOAD_LOST", f"its upload(s) {', '.join(missing)} are no longer available")
    new_id = submit(
        job.route,
        job.route_digest,
        job.inputs,
        uploads,
        job.media_base_url or None,
        job.request_id or None,
        webhook_url=job.webhook_url or None,
        retry_of=job.id,
    )
    _logger.info("job %s (%s) retried as job %s", job.id, job.route, new_id)
    return new_id


def retry_jobs(jobs: Iterable[Job]) -> Report:
    report = Report()
    for job in jobs:
        try:
            new_id = retry(job)
        except ApiError as exc:
            report.skipped.append(f"{job.id}: {exc.message}")
        else:
            report.done.append(f"{job.id} as {new_id}")
    return report
