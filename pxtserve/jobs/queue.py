"""The django-q2 side of jobs: queueing a job's task, and which tasks the broker still holds.

Listing a broker's waiting tasks has no public API in django-q2: the ORM broker's
rows (django_q.models.OrmQ) and the Redis broker's list are read directly, here only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

# what the broker stores per task: the function a worker imports, and its completion hook
TASK_FUNC = "pxtserve.jobs.run.run_job"
TASK_HOOK = "pxtserve.jobs.hook.task_finished"  # run in the monitor: no Pixeltable there
# a webhook delivery run as a task of its own (a cancelled job's, or one that a crash or restart cut short)
WEBHOOK_TASK_FUNC = "pxtserve.jobs.webhooks.deliver"


def enqueue(job_id: str) -> None:
    from django_q.tasks import async_task

    from pxtserve.models import Job

    task_id = async_task(TASK_FUNC, job_id, hook=TASK_HOOK, ack_failure=True, task_name=f"pxtserve-job-{job_id}")
    # update(), not save(): the worker may already have claimed the row
    Job.objects.filter(pk=job_id).update(task_id=task_id or "")


def enqueue_delivery(job_id: str) -> None:
    """Queue the delivery of a finished job's webhook; a worker runs it (no hook: it never fails its job)."""
    from django_q.tasks import async_task

    async_task(WEBHOOK_TASK_FUNC, job_id, task_name=f"pxtserve-webhook-{job_id}")


def sync_mode() -> bool:
    """Whether django-q2 runs tasks inside async_task, in the submitting thread (its `sync` setting)."""
    from django_q.conf import Conf

    return bool(Conf.SYNC)


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
