"""The process tree of a real `manage.py serve`: one process by default (its threads run the jobs); with
`--job-runner cluster` only the job workers load Pixeltable; and nothing is left running.

Every server here runs on this module's own PIXELTABLE_HOME, so that its embedded PostgreSQL is
ours alone (the test session's is used by the session itself, and other sessions run theirs).
"""

from __future__ import annotations

import json
import re
import signal
import socket
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


def assert_stops(database: psutil.Process, home: Path, server: Serve) -> None:
    """The embedded PostgreSQL ends within seconds (else: which processes were still listed as its users)."""
    _, alive = psutil.wait_procs([database], timeout=30)
    if alive:
        listed = json.loads((home / "pgdata" / ".handle_pids.json").read_text())
        users = {pid: psutil.Process(pid).status() if psutil.pid_exists(pid) else "gone" for pid in listed}
        pytest.fail(f"the embedded PostgreSQL still runs; listed users {users}\n{server.log()}")


def loads_pixeltable(process: psutil.Process) -> bool:
    return PIXELTABLE_STACK.search(Path(f"/proc/{process.pid}/maps").read_text()) is not None


def wait_for_task_acknowledged(tmp_path: Path, job_id: str) -> None:
    """Until the monitor has acknowledged the job's task: the broker's queue (the job's only task) is empty."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        with sqlite3.connect(tmp_path / "django.sqlite3") as db:
            if db.execute("SELECT count(*) FROM django_q_ormq").fetchone() == (0,):
                return
        time.sleep(0.2)
    pytest.fail(f"the monitor never acknowledged the task of job {job_id}")


def test_by_default_serve_is_one_process_that_runs_the_jobs_too(home: Path, tmp_path: Path) -> None:
    server = Serve(home, tmp_path)
    try:
        job_id = server.run_job(3)
        wait_for_task_acknowledged(tmp_path, job_id)  # by django-q2's monitor loop, in this process too
        web = psutil.Process(server.process.pid)
        assert web.children(recursive=True) == [], [p.cmdline() for p in web.children(recursive=True)]
        assert f"job {job_id} " in server.log() and f"started on {socket.gethostname()}:{web.pid}" in server.log()
        assert "background jobs run in this process: 1 worker thread(s)" in server.log()
    finally:
        stop_process(server.process)


def test_only_the_job_worker_loads_pixeltable_and_sigterm_stops_the_embedded_database(
    home: Path, tmp_path: Path
) -> None:
    server = Serve(home, tmp_path, "--job-runner", "cluster")
    try:
        job_id = server.run_job(1)
        wait_for_task_acknowledged(tmp_path, job_id)
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
        # SIGTERM (a supervisor's stop): the last process of the tree stops the embedded database it used (the job
        # worker, which ended by os._exit, stays listed among its users; the server knows it is gone)
        database = postmaster(home)
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=60)
        assert_stops(database, home, server)
    finally:
        stop_process(server.process)


def test_ctrl_c_stops_the_embedded_database_too(home: Path, tmp_path: Path) -> None:
    server = Serve(home, tmp_path)
    try:
        server.run_job(2)
        database = postmaster(home)
        server.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        server.process.wait(timeout=60)
        assert_stops(database, home, server)
    finally:
        stop_process(server.process)


def test_the_embedded_database_keeps_running_for_another_live_user(home: Path, tmp_path: Path) -> None:
    # another process using the same Pixeltable home (a notebook, a script): it lists the tables on each line
    user_code = (
        "import sys, pixeltable as pxt\n"
        "pxt.init()\n"
        "print('ready', flush=True)\n"
        "for _ in sys.stdin:\n"
        "    print(len(pxt.list_tables('multinode')), flush=True)\n"
    )
    env = serve_env(tmp_path, PIXELTABLE_HOME=str(home), PIXELTABLE_VERBOSITY="0")
    user = subprocess.Popen(
        [sys.executable, "-c", user_code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert user.stdin is not None and user.stdout is not None
    server = None
    try:
        assert user.stdout.readline().strip() == "ready"
        server = Serve(home, tmp_path, "--no-workers")
        database = postmaster(home)
        stop_process(server.process)
        assert database.is_running()
        user.stdin.write("tables?\n")
        user.stdin.flush()
        assert int(user.stdout.readline()) >= 1  # it can still use the database
    finally:
        if server is not None:
            stop_process(server.process)
        user.stdin.close()
        user.wait(timeout=60)


def test_a_test_session_leaves_no_embedded_database_running(tmp_path: Path) -> None:
    # a session of this suite (its conftest, as a plugin) whose one test starts Pixeltable on a home of its own
    (tmp_path / "test_uses_pixeltable.py").write_text(
        "import os, pathlib, pixeltable as pxt\n"
        "def test_start():\n"
        "    pxt.init()\n"
        "    pid_file = pathlib.Path(os.environ['PIXELTABLE_HOME'], 'pgdata', 'postmaster.pid')\n"
        "    pathlib.Path(os.environ['PID_OUT']).write_text(pid_file.read_text().split()[0])\n"
    )
    home = tmp_path / "pixeltable"
    env = serve_env(tmp_path, PIXELTABLE_HOME=str(home), PID_OUT=str(tmp_path / "postmaster"))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    session = subprocess.run(
        [*command, "--rootdir", str(tmp_path), str(tmp_path / "test_uses_pixeltable.py")],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        assert session.returncode == 0, session.stdout + session.stderr
        database = int((tmp_path / "postmaster").read_text())
        assert not psutil.pid_exists(database) or psutil.Process(database).status() == psutil.STATUS_ZOMBIE
    finally:
        stop_embedded_postgres(home / "pgdata")
