"""Background jobs run by threads of the web process: django-q2's pusher, workers and monitor, without a cluster.

`serve` runs jobs this way by default with one web process (`runs_in_process`
decides). The queue is the same django-q2 broker a cluster reads, so a job is as
durable: its row and its task are written before the request is answered, a task
is acknowledged only once it has ended (its outcome is in its row), and what a stop or a crash cuts
short is requeued or failed as interrupted at the next start (recovery.py). What
it saves is a second Pixeltable stack: the job runs over the web process's own.

django-q2's `pusher`, `worker` and `monitor` are the loops its cluster runs in
processes, passed their queues; here they get thread-safe queues and run in
threads. Two things a cluster has are missing: its guard (a hung job cannot be
killed, and django-q2's SIGALRM timeout only works in the main thread) and the
isolation of a process (a job that crashes the interpreter takes the web process
with it). `--job-runner cluster` has both.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from multiprocessing import Value
from typing import Any

_logger = logging.getLogger("pxtserve.jobs")

_STOP = "STOP"  # what django-q2's worker and monitor loops end on
_RECYCLED = -2  # a worker's timer after it ended to be recycled (django-q2's RECYCLE / MAX_RSS)


def runs_in_process(job_runner: str, web_processes: int) -> bool:
    """Whether `serve` runs jobs in its web process (JOB_RUNNER "in-process"; "auto" with one web process)."""
    if job_runner == "in-process" and web_processes > 1:
        raise ValueError(f"the in-process job runner needs one web process, not {web_processes}")
    return job_runner == "in-process" or (job_runner == "auto" and web_processes == 1)


def job_worker_count() -> int:
    """Worker threads: as many as a cluster would run worker processes (Q_CLUSTER's workers)."""
    from django_q.conf import Conf

    return int(Conf.WORKERS)


class InProcessJobs:
    """The threads: one pusher (broker -> task queue), `workers` workers, one monitor (results -> broker)."""

    def __init__(self, workers: int) -> None:
        from django_q.conf import Conf

        self.workers = workers
        self._tasks: queue.Queue[Any] = queue.Queue(maxsize=max(Conf.QUEUE_LIMIT or 1, 1))
        self._results: queue.Queue[Any] = queue.Queue()
        self._stopping = threading.Event()
        self._threads: dict[str, threading.Thread] = {}

    @classmethod
    def start(cls, workers: int) -> InProcessJobs:
        runner = cls(workers)
        runner._spawn("pusher", runner._push)
        for index in range(workers):
            runner._spawn(f"worker-{index + 1}", runner._work)
        runner._spawn("monitor", runner._monitor)
        _logger.info("background jobs run in this process: %d worker thread(s)", workers)
        return runner

    def _spawn(self, name: str, loop: Callable[[], None]) -> None:
        # daemon threads: a job still running when stop() gives up must not keep the process alive
        thread = threading.Thread(target=loop, name=f"pxtserve-jobs-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()

    def _push(self) -> None:
        from django_q.pusher import pusher

        while not self._stopping.is_set():
            # the loop returns when stopping is set, or after a broker failure (a cluster's sentinel restarts it)
            pusher(self._tasks, self._stopping)
        _close_connections()

    def _work(self) -> None:
        from django_q.conf import Conf
        from django_q.worker import worker

        while True:
            timer = Value("f", -1)
            worker(self._tasks, self._results, timer, Conf.TIMEOUT)
            if timer.value != _RECYCLED or self._stopping.is_set():
                break  # it took the STOP
            # recycled after RECYCLE tasks (or MAX_RSS): a cluster spawns a new worker, this loop goes on
        _close_connections()

    def _monitor(self) -> None:
        from django_q.monitor import monitor

        monitor(self._results)
        _close_connections()

    def stop(self, timeout: float) -> None:
        """Stop taking tasks; let the running jobs finish, up to `timeout` seconds; save their results."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        pusher = self._threads["pusher"]
        while pusher.is_alive() and time.monotonic() < deadline:
            # tasks taken but not started stay in the broker, unacknowledged, for the next start to requeue; taking
            # them out also frees a pusher blocked on the full queue
            self._drop_waiting_tasks()
            pusher.join(0.05)
        self._drop_waiting_tasks()
        workers = [thread for name, thread in self._threads.items() if name.startswith("worker-")]
        for _ in workers:
            self._tasks.put(_STOP)
        for thread in workers:
            thread.join(max(deadline - time.monotonic(), 0))
        still_running = sum(thread.is_alive() for thread in workers)
        if still_running:
            _logger.warning(
                "%d job(s) still running at the stop: the next start fails them as interrupted", still_running
            )
        self._results.put(_STOP)
        self._threads["monitor"].join(max(deadline - time.monotonic(), 1.0))

    def _drop_waiting_tasks(self) -> None:
        while True:
            try:
                self._tasks.get_nowait()
            except queue.Empty:
                return


def _close_connections() -> None:
    """The thread's own Django database connections (Django opens one per thread), as the thread ends."""
    from django.db import connections

    connections.close_all()
