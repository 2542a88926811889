"""The job rows: what a poll answers, where uploads wait, and the helpers every job module shares."""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pydantic
from django.db import close_old_connections, connections, router
from django.utils import timezone

from pxtserve import conf
from pxtserve.errors import ApiError
from pxtserve.pids import process_alive

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from pxtserve.models import Job

INTERRUPTED = (
    "interrupted by a restart: the worker running this job stopped before it finished; "
    "its write may or may not have been committed, so check before submitting it again"
)
# a running job this much older than the task timeout has lost its worker
_TIMEOUT_MARGIN = timedelta(seconds=60)


class JobHandle(pydantic.BaseModel):
    id: str
    job_url: str


StatusName = Literal["pending", "running", "done", "error", "cancelled"]
# a job in one of these is final: it will not change any more
FINAL_STATUSES = ("done", "error", "cancelled")


class JobStatus(pydantic.BaseModel):
    status: StatusName
    # ISO 8601; started_at and finished_at are null until the job starts and finishes (a cancelled job never starts)
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error: str | None = None
    error_detail: dict[str, Any] | None = None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# what a poll reads of a job: its answer (status_body), its route (for the poll's auth), its worker (lost_worker)
POLL_FIELDS = (
    "route",
    "status",
    "submitted_at",
    "started_at",
    "finished_at",
    "result",
    "error",
    "error_detail",
    "worker",
)


def poll_row(job_id: str) -> Job | None:
    """The job's POLL_FIELDS (the rest deferred), or None for an unknown job.

    One raw SELECT by the primary key: the ORM's compilation of the same query (with the ORDER BY of
    Job's Meta ordering) cost a poll about three times what reading the row does; the row still comes
    back as a Job, its values through the fields' own conversions.
    """
    from pxtserve.models import Job

    alias = router.db_for_read(Job)
    return next(iter(Job.objects.raw(_poll_sql(alias), [job_id], using=alias)), None)


@functools.cache
def _poll_sql(alias: str) -> str:
    from pxtserve.models import Job

    quote = connections[alias].ops.quote_name
    meta = Job._meta
    columns = ", ".join(quote(meta.get_field(name).column) for name in (meta.pk.name, *POLL_FIELDS))
    return f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {quote(meta.pk.column)} = %s"


def status_body(job: Job) -> dict[str, Any]:
    """What a poll of the job answers."""
    body: dict[str, Any] = {
        "status": job.status,
        "created_at": _iso(job.submitted_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }
    if job.status == job.Status.DONE:
        body["result"] = job.result
    elif job.status == job.Status.ERROR:
        body.update(error=job.error, error_detail=job.error_detail)
    return body


def job_upload_dir() -> Path:
    configured = conf.settings().JOB_UPLOAD_DIR
    if configured is not None:
        return configured
    from pxtserve.media import media_roots

    home, _ = media_roots()
    return home / "pxtserve_job_uploads"


def finish(job_id: str, status: str, **fields: Any) -> None:
    from pxtserve.models import Job

    Job.objects.filter(pk=job_id).update(status=status, finished_at=timezone.now(), **fields)


def lost_worker(job: Job, now: Any) -> bool:
    """Whether a running job's worker is gone: a dead process on this host, or a run longer than the task timeout."""
    host, _, pid = job.worker.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)):
        return True
    from django_q.conf import Conf

    if not Conf.TIMEOUT or job.started_at is None:
        return False
    return now - job.started_at > timedelta(seconds=Conf.TIMEOUT) + _TIMEOUT_MARGIN


def fail_interrupted(jobs: QuerySet[Job]) -> int:
    from pxtserve.models import Job

    return jobs.filter(status=Job.Status.RUNNING).update(
        status=Job.Status.ERROR,
        finished_at=timezone.now(),
        error=INTERRUPTED,
        error_detail=ApiError(500, "INTERRUPTED", INTERRUPTED).to_dict(),
    )


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def db_connection() -> Iterator[None]:
    """Django's connections are per thread; outside a request nothing closes them, so do it here."""
    close_old_connections()
    try:
        yield
    finally:
        close_old_connections()
