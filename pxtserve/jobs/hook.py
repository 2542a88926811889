"""django-q2's completion hook of a job's task: a task that failed before recording its outcome fails its job.

The hook runs in the cluster's monitor process (django-q2 calls it when it saves the
task's result), which never runs a job: this module imports no Pixeltable, so that
the monitor does not load it (pxtserve.workers).
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from pxtserve.errors import ApiError
from pxtserve.jobs.queue import enqueue_delivery


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
        error_detail=ApiError(500, "WORKER_FAILED", message).to_dict(),
        traceback=str(task.result or ""),
    )
    # a run cut short after its row was final (a timeout, a crash mid-delivery) still owes its webhook
    if Job.objects.filter(pk=task.args[0], webhook_status=Job.WebhookStatus.PENDING).exists():
        enqueue_delivery(task.args[0])
