"""Polling a job: its route (for the poll's auth) and its answer."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.utils import timezone

from pxtserve.jobs.store import db_connection, fail_interrupted, lost_worker, poll_row, status_body


async def job_status_async(job_id: str) -> tuple[str, dict[str, Any]] | None:
    return await sync_to_async(job_status, thread_sensitive=False)(job_id)


def job_status(job_id: str) -> tuple[str, dict[str, Any]] | None:
    """The job's route key and its poll answer, or None for an unknown (or pruned) job."""
    from pxtserve.models import Job

    with db_connection():
        job = poll_row(job_id)
        if job is None:
            return None
        if job.status == Job.Status.RUNNING and lost_worker(job, timezone.now()):
            fail_interrupted(Job.objects.filter(pk=job.pk))
            job.refresh_from_db()
    return job.route, status_body(job)
