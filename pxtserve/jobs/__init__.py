"""Background jobs: a request accepted at once, run by a django-q2 worker, polled at its job URL.

A background request becomes a `Job` row (route, validated inputs, media base URL)
before it is answered (submit.py); the django-q task carries only the job id
(queue.py). A worker finds the route again by its key (pxtserve.registry), runs it,
and writes the outcome to the row (run.py); clients poll the row (poll.py). Because
the row, not the queue, is the record, a restart can tell what was lost (recovery.py):
pending jobs whose task is gone from the broker are requeued, running jobs whose
worker is gone fail. A job runs once however often its task is delivered: the run
claims it (pending -> running) first, unless a client or the admin cancelled it
(pending -> cancelled, control.py). Jobs are listed a page at a time (listing.py),
and a route's webhook_url receives each job's final status (webhooks.py).

This package's __init__ imports none of them, so that importing one of its modules
does not import the others.
"""

from typing import Any

# tasks queued by earlier versions name "pxtserve.jobs.run_job" (and its hook); django-q2 resolves them here
_MOVED = {"run_job": "pxtserve.jobs.run", "task_finished": "pxtserve.jobs.hook"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'pxtserve.jobs' has no attribute {name!r}")
