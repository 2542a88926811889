"""The process tree of a real `manage.py serve`: only job workers load Pixeltable.

Every server here runs on this module's own PIXELTABLE_HOME, so that its embedded PostgreSQL is
ours alone (the test session's is used by the session itself, and other sessions run theirs).
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.processes import REPO, free_port, serve_env, stop_embedded_postgres, stop_process, wait_until_up

SERVICE = """
[[service]]
name = "tree"
modules = ["tests.pxt_app.multinode_schema"]

[[service.routes]]
type = "insert"
table = "multinode.events"
path = "/events"
background = true
"""
JOB_TIMEOUT_S = 120
# what importing Pixeltable maps into a process: numpy's and PIL's compiled cores (Pixeltable itself is pure
# Python); Django, django-q2 and pxtserve's job bookkeeping import neither
PIXELTABLE_STACK = re.compile(r"/numpy/.*_multiarray_umath|/PIL/_imaging")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("tree-home") / "pixeltable"
    yield home
    stop_embedded_postgres(home / "pgdata")  # whatever a failed test left running


class Serve:
    """`manage.py serve` of SERVICE on `home`, its output in a file (a full pipe would block it)."""

    def __init__(self, home: Path, tmp_path: Path, *args: str) -> None:
        self.home = home
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        config = tmp_path / "service.toml"
        config.write_text(SERVICE)
        self.log_path = tmp_path / f"serve-{port}.log"
        command = [sys.executable, "manage.py", "serve", "tree", "--config", str(config)]
        command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", *args]
        env = serve_env(tmp_path, PIXELTABLE_HOME=str(home))
        env.pop("PXTSERVE_JOB_WORKERS", None)  # the default number of job workers
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_until_up(f"{self.base}/docs", self.process, output=self.log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def run_job(self, key: int) -> str:
        """Submit a background insert and wait for its job to end; its id."""
        handle = httpx.post(f"{self.base}/events", json={"id": key, "text": "tree"}, timeout=30)
        assert handle.status_code == 202, handle.text
        job_id: str = handle.json()["id"]
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while (status := httpx.get(f"{self.base}/jobs/{job_id}", timeout=30).json())["status"] in (
            "pending",
            "running",
        ):
            assert time.monotonic() < deadline, f"job {job_id} not finished\n{self.log()}"
            time.sleep(0.2)
        assert status["status"] == "done", status
        assert status["result"]["shout"] == "TREE"
        return job_id


def postmaster(home: Path) -> psutil.Process:
    """The embedded PostgreSQL serving `home` (by its own pgdata's postmaster.pid: never another one)."""
    return psutil.Process(int((home / "pgdata" / "postmaster.pid").read_text().split()[0]))


def loads_pixeltable(process: psutil.Process) -> bool:
    return PIXELTABLE_STACK.search(Path(f"/proc/{process.pid}/maps").read_text()) is not None


def wait_for_task_saved(tmp_path: Path, job_id: str) -> None:
    """Until the cluster's monitor has saved the job's task (which calls its completion hook)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        with sqlite3.connect(tmp_path / "django.sqlite3") as db:
            if db.execute("SELECT 1 FROM django_q_task WHERE name = ?", (f"pxtserve-job-{job_id}",)).fetchone():
                return
        time.sleep(0.2)
    pytest.fail(f"the monitor never saved the task of job {job_id}")


def test_only_the_job_worker_loads_pixeltable_and_its_job_completes(home: Path, tmp_path: Path) -> None:
    server = Serve(home, tmp_path)
    try:
        job_id = server.run_job(1)
        wait_for_task_saved(tmp_path, job_id)
        web = psutil.Process(server.process.pid)
        [cluster] = [p for p in web.children() if "pxtserve.workers" in p.cmdline()]
        [sentinel] = cluster.children()
        spawned = sentinel.children()  # the job workers, the monitor and the pusher
        assert loads_pixeltable(web)  # the check sees Pixeltable where it is
        assert not loads_pixeltable(cluster)
        assert not loads_pixeltable(sentinel)
        job_workers = [p for p in spawned if loads_pixeltable(p)]
        # one job worker by default; the monitor has run the job's completion hook, and still has no Pixeltable
        assert len(job_workers) == 1, server.log()
        assert len(spawned) - len(job_workers) == 2, [p.cmdline() for p in spawned]
    finally:
        stop_process(server.process)
