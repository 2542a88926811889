"""Listing jobs: `GET <mount>/jobs`, newest first, a page at a time.

The cursor is opaque to clients: the (submitted_at, id) of the last job of the page,
base64url-encoded JSON. Ordering by both makes the pages stable while new jobs arrive:
they sort before the first page, never into a later one.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pydantic
from django.db.models import Q
from django.utils import timezone

from pxtserve.errors import ApiError
from pxtserve.jobs.store import JobStatus, StatusName, db_connection, fail_interrupted, lost_worker
from pxtserve.jobs.store import status_body as poll_body
from pxtserve.registry import route_of_key

if TYPE_CHECKING:
    from pxtserve.models import Job

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class JobListQuery(pydantic.BaseModel):
    """The query string of `GET <mount>/jobs`."""

    status: StatusName | None = pydantic.Field(None, description="only jobs in this status")
    route: str | None = pydantic.Field(None, description='only this route\'s jobs: "POST /items", or just "/items"')
    limit: int = pydantic.Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="jobs per page")
    cursor: str | None = pydantic.Field(None, description="the previous page's next_cursor")


class JobListItem(JobStatus):
    id: str
    route: str
    job_url: str


class JobList(pydantic.BaseModel):
    jobs: list[JobListItem]
    # null on the last page
    next_cursor: str | None


def encode_cursor(job: Job) -> str:
    raw = json.dumps([job.submitted_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, job_id = json.loads(raw)
        parsed = datetime.fromisoformat(moment)
        if not isinstance(job_id, str) or parsed.tzinfo is None:
            raise ValueError(cursor)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ApiError(
            422, "INVALID_CURSOR", "cursor: not a cursor this API gave out (pass a page's next_cursor unchanged)"
        ) from None
    return parsed, job_id


def route_matches(route: str, wanted: str) -> bool:
    """Whether a job's route ("POST /items") is the one a `route` filter names ("POST /items" or "/items")."""
    return wanted in (route, route.partition(" ")[2])


def list_jobs(route_keys: list[str], query: JobListQuery, job_url: Callable[[str], str]) -> dict[str, Any]:
    """A page of the jobs of the given routes (by route key), as `GET <mount>/jobs` answers it."""
    from pxtserve.models import Job

    after = decode_cursor(query.cursor) if query.cursor else None
    if query.route is not None:
        route_keys = [key for key in route_keys if route_matches(route_of_key(key), query.route)]
    with db_connection():
        jobs = Job.objects.filter(route__in=route_keys).order_by("-submitted_at", "-id")
        if query.status is not None:
            jobs = jobs.filter(status=query.status)
        if after is not None:
            moment, job_id = after
            jobs = jobs.filter(Q(submitted_at__lt=moment) | Q(submitted_at=moment, id__lt=job_id))
        page = list(jobs.defer("inputs", "traceback", "trace_context")[: query.limit + 1])
        more = len(page) > query.limit
        page = page[: query.limit]
        now = timezone.now()
        # as a poll would: a running job whose worker is gone has failed
        lost = [job.pk for job in page if job.status == Job.Status.RUNNING and lost_worker(job, now)]
        if lost:
            fail_interrupted(Job.objects.filter(pk__in=lost))
            for job in page:
                if job.pk in lost:
                    job.refresh_from_db()
    items = [
        {**poll_body(job), "id": job.id, "route": route_of_key(job.route), "job_url": job_url(job.id)} for job in page
    ]
    return {"jobs": items, "next_cursor": encode_cursor(page[-1]) if more else None}
