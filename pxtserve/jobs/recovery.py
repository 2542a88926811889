"""After a (re)start, and from time to time: requeue lost jobs, fail interrupted ones, prune old ones."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from pxtserve import conf
from pxtserve.idempotency import prune_keys
from pxtserve.jobs.queue import enqueue, enqueue_delivery, queued_task_ids
from pxtserve.jobs.store import FINAL_STATUSES, db_connection, fail_interrupted, lost_worker
from pxtserve.jobs.webhooks import stalled_deliveries
from pxtserve.throttle import Throttle
from pxtserve.uploads import remove_files

_logger = logging.getLogger("pxtserve.jobs")

# pruning runs on start and at most this often per process while jobs are submitted
_PRUNE_INTERVAL_S = 600.0


def recover_jobs(cluster_started_at: datetime | None = None) -> dict[str, int]:
    """After a (re)start: fail running jobs whose worker is gone, requeue pending jobs that no queued task will run.

    A task a cluster took from the queue is lost if that cluster died; with the
    ORM broker, one taken since `cluster_started_at` (the cluster recovering)
    counts as alive. A requeued job whose task was alive after all runs once:
    the first task to claim it (pending -> running) runs it, the other finds it
    claimed.
    """
    from pxtserve.models import Job

    with db_connection():
        now = timezone.now()
        running = Job.objects.filter(status=Job.Status.RUNNING).only("id", "worker", "started_at")
        lost = [job.pk for job in running if lost_worker(job, now)]
        interrupted = fail_interrupted(Job.objects.filter(pk__in=lost)) if lost else 0
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


def prune_jobs() -> int:
    """Delete finished jobs older than JOB_RETENTION_SECONDS."""
    from pxtserve.models import Job

    cutoff = timezone.now() - timedelta(seconds=conf.settings().JOB_RETENTION_SECONDS)
    with db_connection():
        expired = Job.objects.filter(status__in=FINAL_STATUSES, finished_at__lt=cutoff)
        # a job that failed before a worker took its uploads leaves them behind
        for uploads in expired.values_list("uploads", flat=True):
            remove_files((uploads or {}).values())
        deleted, _ = expired.delete()
    return deleted


_prune = Throttle(_PRUNE_INTERVAL_S)


def maybe_prune() -> None:
    if _prune.due():
        prune_jobs()


def start_up(cluster_started_at: datetime | None = None) -> dict[str, int]:
    """What `serve` (and each worker as it starts) does about jobs left by an earlier run."""
    counts = recover_jobs(cluster_started_at)
    counts["pruned"] = prune_jobs()
    counts["idempotency_keys"] = prune_keys()
    counts["webhooks"] = resume_deliveries()
    return counts


def resume_deliveries() -> int:
    """Queue again the webhook deliveries a dead worker left pending; they go on with the attempts left."""
    with db_connection():
        stalled = stalled_deliveries()
        for job_id in stalled:
            enqueue_delivery(job_id)
    if stalled:
        _logger.info("jobs after a restart: %d webhook deliveries resumed", len(stalled))
    return len(stalled)
