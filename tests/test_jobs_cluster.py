"""Background jobs for real: `manage.py serve` with its job runner, over HTTP, across a SIGKILL.

The runner is the web process's own threads by default (one web process), or django-q2's worker cluster beside
it (`--job-runner cluster`); both read the same broker, so what a restart recovers does not depend on it.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.processes import free_port, serve_env, wait_until_up

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 120

SERVICE = """
[[service]]
name = "jobs"
prefix = "/api"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"
background = true

[[service.routes]]
type = "query"
path = "/slow"
query = "tests.pxt_app.slow_queries.slow_name"
background = true
"""


class Server:
    """One `manage.py serve` process, its output in a file (a full pipe would block it)."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/api"
        config = tmp_path / "service.toml"
        config.write_text(SERVICE)
        self.log_path = tmp_path / f"serve-{self.port}.log"
        env = serve_env(tmp_path, PXTSERVE_JOB_WORKERS="1")
        command = [sys.executable, "manage.py", "serve", "jobs", "--config", str(config)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), *args]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.descendants: list[psutil.Process] = []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        wait_until_up(f"{self.base}/docs", self.process, START_TIMEOUT_S, self.log)
        self.refresh()

    def refresh(self) -> None:
        """Note the processes the server has started (the worker cluster's included) so far."""
        try:
            found = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        known = {p.pid for p in self.descendants}
        self.descendants += [p for p in found if p.pid not in known]

    def submit(self, body: dict[str, Any], path: str = "/items") -> dict[str, Any]:
        r = httpx.post(f"{self.base}{path}", json=body, timeout=30)
        assert r.status_code == 202, r.text
        handle = r.json()
        assert handle["job_url"] == f"{self.base}/jobs/{handle['id']}"
        return handle

    def status(self, job_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.base}/jobs/{job_id}", timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_finished(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while (status := self.status(job_id))["status"] in ("pending", "running"):
            assert time.monotonic() < deadline, f"job {job_id} still pending\n" + self.log()
            time.sleep(0.3)
        return status

    def kill(self) -> None:
        """SIGKILL the server and everything it started (what a test must never leave behind)."""
        self.refresh()
        for proc in [self.process_handle(), *self.descendants]:
            try:
                proc.kill()
            except (psutil.NoSuchProcess, AttributeError):
                pass
        self.process.wait(timeout=30)

    def process_handle(self) -> psutil.Process | None:
        try:
            return psutil.Process(self.process.pid)
        except psutil.NoSuchProcess:
            return None


def wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive


def job_ran_in(server: Server, job_id: str) -> int:
    """The pid of the process that ran a job (the run's log line names its worker, host:pid)."""
    [line] = [line for line in server.log().splitlines() if f"job {job_id} " in line and " started on " in line]
    return int(line.rpartition(":")[2])


@pytest.mark.parametrize("runner", ["in-process", "cluster"])
def test_jobs_run_where_the_runner_says_and_ctrl_c_stops_everything(pxt_tables, tmp_path, new_id, runner):
    server = Server(tmp_path, "--job-runner", runner)
    try:
        server.wait_ready()
        key = new_id()
        job = server.submit({"id": key, "name": "cluster", "tag": "bg"})
        status = server.wait_finished(job["id"])
        assert status["status"] == "done", status
        assert status["result"]["id"] == key and status["result"]["name_upper"] == "CLUSTER"
        row = pxt_tables.items.where(pxt_tables.items.id == key).select(pxt_tables.items.name).collect()
        assert list(row["name"]) == ["cluster"]
        server.refresh()
        if runner == "in-process":
            # one process: the web process ran the job, and started no other
            assert job_ran_in(server, job["id"]) == server.process.pid
            assert server.descendants == [], [p.cmdline() for p in server.descendants]
        else:
            assert server.descendants, "serve started no worker processes"
            assert job_ran_in(server, job["id"]) in {p.pid for p in server.descendants}

        failed = server.wait_finished(server.submit({"id": key, "name": "duplicate"})["id"])
        assert failed["status"] == "error", failed
        assert failed["error"] and failed["error_detail"]["message"] == failed["error"]

        server.refresh()
        server.process.send_signal(signal.SIGINT)  # what Ctrl-C sends (the workers lead their own process group)
        server.process.wait(timeout=60)
        assert wait_gone(server.descendants, timeout=30) == [], "workers outlived the server"
        # both tasks ran to their end (a job's error is its outcome), so both were acknowledged, and django-q2 kept
        # no copy of them: the Job rows are the record (its pruning of kept copies cost a job about 10 ms)
        with sqlite3.connect(tmp_path / "django.sqlite3") as db:
            assert db.execute("SELECT count(*) FROM django_q_ormq").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM django_q_task").fetchone() == (0,)
    finally:
        server.kill()


def test_job_accepted_before_a_sigkill_finishes_after_the_restart(pxt_tables, tmp_path, new_id):
    # accepted by a server without workers, which then dies without any chance to clean up
    first = Server(tmp_path, "--no-workers")
    try:
        first.wait_ready()
        queued_key, lost_key = new_id(), new_id()
        queued = first.submit({"id": queued_key, "name": "queued"})
        lost = first.submit({"id": lost_key, "name": "lost"})
        assert first.status(queued["id"])["status"] == first.status(lost["id"])["status"] == "pending"
    finally:
        first.kill()
    # the second job's task is lost too, as if the killed process had taken it off the queue
    with sqlite3.connect(tmp_path / "django.sqlite3") as db:
        db.execute("DELETE FROM django_q_ormq WHERE id = (SELECT MAX(id) FROM django_q_ormq)")

    second = Server(tmp_path)
    try:
        second.wait_ready()
        for job, key, name in [(queued, queued_key, "QUEUED"), (lost, lost_key, "LOST")]:
            status = second.wait_finished(job["id"])
            assert status["status"] == "done", status
            assert status["result"]["id"] == key and status["result"]["name_upper"] == name
        assert "Jobs: 1 requeued" in second.log()
    finally:
        second.kill()


def job_row_status(tmp_path: Path, job_id: str) -> str:
    with sqlite3.connect(tmp_path / "django.sqlite3") as db:
        return db.execute("SELECT status FROM pxtserve_job WHERE id = ?", (job_id,)).fetchone()[0]


def test_job_running_when_everything_is_killed_ends_as_interrupted(pxt_tables, tmp_path, new_id):
    first = Server(tmp_path)
    try:
        first.wait_ready()
        key = new_id()
        pxt_tables.items.insert([{"id": key, "name": "slow"}])
        job = first.submit({"id": key, "seconds": 60}, path="/slow")
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while job_row_status(tmp_path, job["id"]) != "running":
            assert time.monotonic() < deadline, first.log()
            time.sleep(0.2)
        assert first.status(job["id"])["status"] == "running"
    finally:
        first.kill()  # the server and its workers, all at once

    second = Server(tmp_path)
    try:
        second.wait_ready()
        status = second.status(job["id"])
        assert status["status"] == "error" and "interrupted by a restart" in status["error"], status
        assert "1 interrupted" in second.log()
    finally:
        second.kill()


def test_sigterm_lets_the_job_running_in_the_web_process_finish(pxt_tables, tmp_path, new_id):
    server = Server(tmp_path)  # the default runner: threads of the web process
    try:
        server.wait_ready()
        key = new_id()
        pxt_tables.items.insert([{"id": key, "name": "slow"}])
        running = server.submit({"id": key, "seconds": 3}, path="/slow")
        waiting = server.submit({"id": key, "seconds": 0}, path="/slow")  # one worker thread: this one waits
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while job_row_status(tmp_path, running["id"]) != "running":
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=60)
        # the stop waited for the running job; the waiting one was not started, and stays pending for the next start
        assert job_row_status(tmp_path, running["id"]) == "done", server.log()
        assert job_row_status(tmp_path, waiting["id"]) == "pending", server.log()
    finally:
        server.kill()
    restarted = Server(tmp_path)
    try:
        restarted.wait_ready()
        assert restarted.wait_finished(waiting["id"])["status"] == "done", restarted.log()
    finally:
        restarted.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_sigterm_stops_server_and_workers(pxt_tables, tmp_path, signum):
    server = Server(tmp_path, "--job-runner", "cluster")
    try:
        server.wait_ready()
        assert server.descendants
        time.sleep(2)  # let the cluster spawn its workers
        server.refresh()
        server.process.send_signal(signum)
        server.process.wait(timeout=60)
        assert wait_gone(server.descendants, timeout=30) == []
    finally:
        server.kill()
