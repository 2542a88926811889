"""Job worker processes: how each prepares itself (`on_worker_spawn`), and the cluster `manage.py serve` runs.

With `--job-runner cluster` (the default with several web processes; pxtserve.jobs.in_process has the other
runner), `serve` runs django-q2's `qcluster` as a child process beside its web server.

A child process rather than django-q2's Cluster started inside `serve`: the
serve process has initialized Pixeltable, and forking it would hand broken
connections to the workers. The child leads its own process group, so a
terminal's Ctrl-C reaches `serve` alone, which then stops the workers and waits
for them, and kills the whole group if they do not stop in time. A child whose
parent died without stopping it (SIGKILL) notices its stdin close and stops.

Only the job workers load Pixeltable (`on_worker_spawn`). The cluster's other
processes (this child, django-q2's sentinel, its monitor and its pusher) run
Django alone: what every Django process imports of pxtserve (models, admin, the
jobs' completion hook, which the monitor runs) imports no Pixeltable, and
test_process_tree checks it.

Run by `serve` as `python -m pxtserve.workers --settings S --pythonpath P`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pxtserve import startup

_logger = logging.getLogger(__name__)

# how long `serve` waits for the workers to finish their current jobs before killing them
STOP_TIMEOUT_S = 15.0


class WorkerProcess:
    """The worker cluster child of this process."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @classmethod
    def start(cls) -> WorkerProcess:
        from django.conf import settings

        command = [
            sys.executable,
            "-m",
            "pxtserve.workers",
            "--settings",
            settings.SETTINGS_MODULE,
            "--pythonpath",
            _import_root(settings.SETTINGS_MODULE),
        ]
        # stdin is the lifeline: it closes when this process ends, however it ends
        return cls(subprocess.Popen(command, stdin=subprocess.PIPE, start_new_session=True))

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the cluster (running jobs finish, up to `timeout`), then make sure nothing of it is left."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group: sentinel, workers, monitor, pusher
        except ProcessLookupError:
            pass
        else:
            _wait_group_ended(self.process.pid)
        self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()


def _wait_group_ended(group: int, timeout: float = 5.0) -> None:
    """Wait until every process of a killed group has ended (a zombie has): the sentinel's children are not ours to
    wait for, and what runs next (the embedded database's last-user check) must not find them still running."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = False
        for process in psutil.process_iter(["status"]):
            try:
                running = os.getpgid(process.pid) == group and process.info["status"] != psutil.STATUS_ZOMBIE
            except ProcessLookupError:
                continue
            if running:
                break
        if not running:
            return
        time.sleep(0.05)


def on_worker_spawn(sender: Any, proc_name: str = "", **kwargs: Any) -> None:
    """django-q2's post_spawn: make a fresh worker process ready for jobs.

    A worker forked from a process that initialized Pixeltable must not use the
    inherited pooled connections; then recover jobs left by an earlier run
    (this is what `manage.py qcluster` started on its own does on start), and
    build the service so the first job does not pay for it.
    """
    if multiprocessing.current_process().name == "MainProcess":
        return  # django-q2's sync mode runs the "worker" in the calling process
    # the worker imports Pixeltable and builds the service here (pxtserve.startup says why)
    with startup.paused():
        _prepare_worker(proc_name)


def _prepare_worker(proc_name: str) -> None:
    from pxtserve.pxt_internals import dispose_inherited_engine

    dispose_inherited_engine()
    try:
        from pxtserve.jobs.recovery import start_up

        start_up(cluster_started_at=_parent_started_at())
    except Exception:
        _logger.exception("worker %s: recovering jobs failed", proc_name)
    try:
        from django.urls import get_resolver

        from pxtserve.service import active_service

        active_service()
        get_resolver().url_patterns  # noqa: B018 - constructs the routers the URLconf mounts
    except Exception:
        _logger.exception("worker %s: building the service failed; its jobs will fail", proc_name)
    finally:
        from django.db import close_old_connections

        close_old_connections()


def _parent_started_at() -> datetime:
    """When this worker's parent, the cluster's sentinel, started."""
    import psutil

    return datetime.fromtimestamp(psutil.Process(os.getppid()).create_time(), tz=UTC)


def connect_worker_signals() -> None:
    from django_q.signals import post_spawn

    post_spawn.connect(on_worker_spawn, dispatch_uid="pxtserve.workers.on_worker_spawn")


def _import_root(module_name: str) -> str:
    """The sys.path entry from which `module_name` was imported."""
    top = importlib.import_module(module_name.partition(".")[0])
    if hasattr(top, "__path__"):  # a package, regular or namespace
        return str(Path(next(iter(top.__path__))).resolve().parent)
    return str(Path(top.__file__ or ".").resolve().parent)


def _stop_when_stdin_closes(fd: int) -> None:
    """Wait for EOF on stdin (the parent is gone), then stop the cluster as a SIGTERM would.

    os.read on a duplicate of fd 0, not sys.stdin: a thread blocked in sys.stdin
    holds its lock, and multiprocessing closes sys.stdin in every forked child,
    which would then wait for that lock forever.
    """
    try:
        while os.read(fd, 4096):
            pass
    finally:
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pxtserve.workers")
    parser.add_argument("--settings", required=True)
    parser.add_argument("--pythonpath", required=True)
    args = parser.parse_args(argv)

    from django.core.management import execute_from_command_line

    lifeline = os.dup(0)
    threading.Thread(target=_stop_when_stdin_closes, args=(lifeline,), daemon=True, name="pxtserve-lifeline").start()
    # qcluster starts the cluster, installs SIGTERM/SIGINT handlers that stop it, and returns. No system checks:
    # they would load the URLconf, and so build the service and Pixeltable in this process, which forks the workers.
    execute_from_command_line(
        ["pxtserve.workers", "qcluster", "--skip-checks", "--settings", args.settings, "--pythonpath", args.pythonpath]
    )
    while multiprocessing.active_children():
        time.sleep(0.2)


if __name__ == "__main__":
    main()
