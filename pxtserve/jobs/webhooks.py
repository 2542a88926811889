"""Webhooks: a background route's `webhook_url` receives the final status of each of its jobs.

The body is the job's final poll body (store.status_body) with its `id` and `route`, as
JSON; the `X-Pxtserve-Signature` header is the hex HMAC-SHA256 of exactly those bytes
under WEBHOOK_SECRET. Without a secret nothing is sent: a receiver could not tell a
delivery from a forgery, so the delivery fails at once, saying why (check pxtserve.W006
warns at start). A 2xx answer delivers it; anything else (an error status, a timeout, a
refused connection) is retried, WEBHOOK_ATTEMPTS attempts in all, waiting
WEBHOOK_RETRY_DELAY seconds before the first retry and twice as long before each next
one. The URL's host must resolve to public addresses only, as for media URLs
(pxtserve.addresses), unless WEBHOOK_ALLOW_PRIVATE: a refused address fails the delivery
at once and is never contacted. Redirects are not followed.

A delivery runs in a worker once the job's row is final: right after the run (run.py), or
as a task of its own (a cancelled job, a run cut short by a crash or a timeout, a
delivery a dead worker left unfinished). It never blocks, changes or fails its job; its
state is on the job's row (webhook_status pending -> delivered | failed, the attempts
made, the last error, when it was delivered) and shown in the admin.

Each attempt is claimed on the row first (webhook_attempts n -> n+1), so two deliverers
of one job never both make it: the one whose claim fails stops. A worker that dies
mid-retry leaves the delivery pending with the attempts it made; the next start of a
worker (recovery.start_up) queues it again and it goes on with the attempts left. So a
delivery is made at least once: if a worker dies after the receiver took a POST and
before the row says so, the receiver gets it again. Receivers deduplicate by `id`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.parse
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from pxtserve import conf
from pxtserve.addresses import default_port, pinned_request, public_addresses, resolve
from pxtserve.jobs.store import FINAL_STATUSES, db_connection, status_body
from pxtserve.registry import route_of_key

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from pxtserve.models import Job

_logger = logging.getLogger("pxtserve.jobs")

SIGNATURE_HEADER = "X-Pxtserve-Signature"
MISSING_SECRET = (
    "PXTSERVE['WEBHOOK_SECRET'] (PXTSERVE_WEBHOOK_SECRET) is not set: webhooks are sent signed only, "
    "so none is delivered"
)
# besides the attempts' timeouts and delays, what a delivery may take (resolving, updating the row)
_SLACK = timedelta(seconds=60)


def signature(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of `body`: what a receiver computes over the bytes it got, to compare."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(job: Job) -> bytes:
    """The delivered body: the job's final poll body with its id and route."""
    body = {"id": job.id, "route": route_of_key(job.route), **status_body(job)}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def retry_delay(attempts_made: int) -> float:
    """Seconds to wait before the next attempt, after `attempts_made` (at least one) failed."""
    return float(conf.settings().WEBHOOK_RETRY_DELAY * 2 ** (attempts_made - 1))


def delivery_window() -> timedelta:
    """The longest a delivery can take: a pending one older than this was cut short."""
    current = conf.settings()
    attempts = current.WEBHOOK_ATTEMPTS
    waits = sum(retry_delay(n) for n in range(1, attempts))
    return timedelta(seconds=waits + attempts * current.WEBHOOK_TIMEOUT) + _SLACK


@dataclass(frozen=True)
class _Outcome:
    error: str = ""  # "": the receiver took it
    contacted: bool = True  # False: refused before any connection, and so never worth retrying


def _post(url: str, body: bytes, headers: dict[str, str]) -> _Outcome:
    import httpx

    current = conf.settings()
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        port = default_port(url)
        addresses = resolve(host, port) if current.WEBHOOK_ALLOW_PRIVATE else public_addresses(host, port)
    except (OSError, UnicodeError, ValueError) as exc:
        return _Outcome(f"cannot resolve host {host!r}: {exc}")
    if addresses is None:
        return _Outcome(
            f"refused: host {host!r} resolves to a non-public address; webhooks go to public addresses only "
            "unless PXTSERVE['WEBHOOK_ALLOW_PRIVATE'] (PXTSERVE_WEBHOOK_ALLOW_PRIVATE=1)",
            contacted=False,
        )
    if not addresses:
        return _Outcome(f"host {host!r} has no address")
    try:
        # no redirects: a redirect could point at an internal address
        with httpx.Client(follow_redirects=False, timeout=current.WEBHOOK_TIMEOUT) as client:
            response = client.send(pinned_request(client, url, addresses[0], "POST", content=body, headers=headers))
    except httpx.HTTPError as exc:
        # the URL is not logged: a ${VAR} may have put a token in it
        return _Outcome(f"POST to {host!r} failed: {type(exc).__name__}: {exc}")
    if 200 <= response.status_code < 300:
        return _Outcome()
    return _Outcome(f"the receiver at {host!r} answered {response.status_code}")


def _give_up(rows: QuerySet[Job], error: str, job_id: str) -> str:
    from pxtserve.models import Job

    rows.update(webhook_status=Job.WebhookStatus.FAILED, webhook_error=error)
    _logger.warning("job %s: webhook not delivered: %s", job_id, error)
    return Job.WebhookStatus.FAILED


def _deliver(job_id: str) -> str:
    from pxtserve.models import Job

    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return ""
    if job.webhook_status != Job.WebhookStatus.PENDING or job.status not in FINAL_STATUSES:
        return job.webhook_status
    pending = Job.objects.filter(pk=job_id, webhook_status=Job.WebhookStatus.PENDING)
    current = conf.settings()
    if current.WEBHOOK_SECRET is None:
        return _give_up(pending, MISSING_SECRET, job_id)
    body = payload(job)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "pxtserve-webhook",
        SIGNATURE_HEADER: signature(current.WEBHOOK_SECRET.get_secret_value(), body),
    }
    made, error = job.webhook_attempts, job.webhook_error
    while made < current.WEBHOOK_ATTEMPTS:
        if made:
            time.sleep(retry_delay(made))
        # claim the attempt: another deliverer of this job (a requeued delivery) that got there first goes on alone
        if not pending.filter(webhook_attempts=made).update(webhook_attempts=made + 1):
            return Job.WebhookStatus.PENDING
        outcome = _post(job.webhook_url, body, headers)
        if not outcome.contacted:
            pending.update(webhook_attempts=made)  # a refused address was never contacted
            return _give_up(pending, outcome.error, job_id)
        made += 1
        if not outcome.error:
            pending.update(
                webhook_status=Job.WebhookStatus.DELIVERED, webhook_error="", webhook_delivered_at=timezone.now()
            )
            _logger.info("job %s: webhook delivered (attempt %d)", job_id, made)
            return Job.WebhookStatus.DELIVERED
        error = outcome.error
        pending.update(webhook_error=error)
        _logger.info("job %s: webhook attempt %d of %d failed: %s", job_id, made, current.WEBHOOK_ATTEMPTS, error)
    return _give_up(pending, f"gave up after {made} attempts; the last: {error}", job_id)


def deliver(job_id: str) -> str:
    """Deliver a final job's webhook, with its retries; the delivery's status. Never raises: it must not fail a job.

    Run by a worker: right after the job's run, or as the task queue.enqueue_delivery queues.
    """
    try:
        with db_connection():
            return _deliver(job_id)
    except Exception:
        _logger.exception("job %s: webhook delivery failed unexpectedly", job_id)
        return ""


def stalled_deliveries() -> list[str]:
    """Final jobs whose delivery is still pending long after they finished: the worker delivering it died."""
    from pxtserve.models import Job

    cutoff = timezone.now() - delivery_window()
    jobs = Job.objects.filter(
        webhook_status=Job.WebhookStatus.PENDING, status__in=FINAL_STATUSES, finished_at__lt=cutoff
    )
    return list(jobs.values_list("id", flat=True))


def unsigned_routes_message(routes: list[str]) -> str:
    return f"{', '.join(routes)} declare(s) webhook_url, but {MISSING_SECRET}"


def pending_fields(webhook_url: str | None) -> dict[str, Any]:
    """A new job's webhook fields: pending when its route has a webhook_url."""
    if not webhook_url:
        return {}
    return {"webhook_url": webhook_url, "webhook_status": "pending"}
