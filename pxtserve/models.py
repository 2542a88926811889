"""The job table: one row per background request, so a job outlives the process that accepted it."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


def new_job_id() -> str:
    return uuid.uuid4().hex


class Job(models.Model):
    """A background request: its validated inputs, where it stands, and its outcome.

    The django-q task that runs it only carries the id; everything the worker
    needs (route, inputs, media base URL) is here, written before the request is
    answered.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        ERROR = "error"
        # cancelled while pending (pxtserve.jobs.control): it never runs
        CANCELLED = "cancelled"

    class WebhookStatus(models.TextChoices):
        # "" (blank): the route has no webhook_url
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=32, default=new_job_id, editable=False)
    # "POST /items", or "<router name>: POST /items" for a named router
    route = models.CharField(max_length=300, db_index=True)
    # tells apart unnamed routers serving the same method and path differently (see pxtserve.jobs.route_digest)
    route_digest = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    inputs = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    # uploaded files by field, kept in JOB_UPLOAD_DIR until a worker hands them to Pixeltable
    uploads = models.JSONField(default=dict, blank=True)
    media_base_url = models.CharField(max_length=2000, blank=True)
    submitted_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True, db_index=True)
    result = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    error = models.TextField(blank=True)
    error_detail = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    # for operators only, never in a poll's answer
    traceback = models.TextField(blank=True)
    # the django-q task last queued for this job
    task_id = models.CharField(max_length=32, blank=True)
    # "<host>:<pid>" of the worker process that runs or ran it: lets a restart tell a dead worker's job
    worker = models.CharField(max_length=300, blank=True)
    # the X-Request-ID of the request that made it (pxtserve.request_id): the worker's log lines carry it too,
    # so one id finds the request's and the job's lines; indexed, for the admin's search from a log line
    request_id = models.CharField(max_length=200, blank=True, default="", db_index=True)
    # the submitting request's W3C trace context (pxtserve.tracing), so the worker's spans continue its trace
    trace_context = models.JSONField(default=dict, blank=True)
    # the job this one re-submits (the admin's "retry")
    retry_of = models.CharField(max_length=32, blank=True, default="")
    # the route's webhook_url when the job was submitted, and its delivery (pxtserve.jobs.webhooks)
    webhook_url = models.CharField(max_length=2000, blank=True, default="")
    webhook_status = models.CharField(max_length=16, choices=WebhookStatus.choices, blank=True, default="")
    webhook_attempts = models.PositiveIntegerField(default=0)
    webhook_error = models.TextField(blank=True, default="")
    webhook_delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-submitted_at",)

    def __str__(self) -> str:
        return f"{self.route} [{self.id}]"

    @property
    def duration(self) -> timedelta | None:
        """How long it ran (so far, while running)."""
        if self.started_at is None:
            return None
        from django.utils import timezone

        return (self.finished_at or timezone.now()) - self.started_at


class IdempotencyKey(models.Model):
    """An `Idempotency-Key` a client sent to a writing route, and the answer it got (pxtserve.idempotency).

    The unique (route, key) pair is the lock: the first request inserts the row ("running"),
    a concurrent one fails to and reads it instead, in any process or node sharing the database.
    """

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"

    # the route key, as jobs name routes ("POST /items", "<router name>: POST /items")
    route = models.CharField(max_length=300)
    key = models.CharField(max_length=255)
    # sha256 of the request as the route validated it, uploads by their digests
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    # this claim's own id: a request whose claim was taken over (abandoned) meanwhile changes nothing
    token = models.CharField(max_length=32, default=new_job_id)
    # "<host>:<pid>" of the web process running it: a dead one's claim is taken over at once
    owner = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.BinaryField(null=True, blank=True)

    class Meta:
        constraints = (models.UniqueConstraint(fields=["route", "key"], name="pxtserve_idempotency_route_key"),)

    def __str__(self) -> str:
        return f"{self.route} [{self.key}]"
