"""/readyz over a real server process: each check is bounded by READY_CHECK_TIMEOUT, a busy Pixeltable
pool is a "timeout" rather than a long wait, and a failed part is named without its error (logged instead)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import REPO, free_port, serve_env, stop_process, wait_until_up

SERVICE = """
[[service]]
name = "ready"
modules = ["tests.pxt_app.schema"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"
inputs = ["id", "name"]
outputs = ["id"]

[[service.routes]]
type = "query"
path = "/slow"
query = "tests.pxt_app.slow_queries.slow_name"
"""

SETTINGS = """
from project.settings import *

PXTSERVE = {**PXTSERVE, "POOL_SIZE": 1, "READY_CHECK_TIMEOUT": 1.0}
"""


class Server:
    def __init__(self, url: str, log: Path, db_dir: Path) -> None:
        self.url, self.log, self.db_dir = url, log, db_dir


@pytest.fixture(scope="module")
def server(pxt_tables, tmp_path_factory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("ready")
    (tmp_path / "ready_settings.py").write_text(SETTINGS)
    (tmp_path / "ready.toml").write_text(SERVICE)
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    port = free_port()
    env = serve_env(
        tmp_path,
        PYTHONPATH=f"{tmp_path}:{REPO}",
        DJANGO_SETTINGS_MODULE="ready_settings",
        PXTSERVE_DJANGO_DB=str(db_dir / "django.sqlite3"),
    )
    log_path = tmp_path / "serve.log"
    command = [sys.executable, "manage.py", "serve", "ready", "--config", str(tmp_path / "ready.toml")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-workers"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process, output=lambda: log_path.read_text())
        yield Server(f"http://127.0.0.1:{port}", log_path, db_dir)
    finally:
        stop_process(process)


def test_ready_when_every_part_answers(server):
    r = httpx.get(server.url + "/readyz", timeout=30)
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"pixeltable": "ok", "database": "ok"}}


def test_a_busy_pixeltable_pool_is_a_timeout_not_a_wait(server, new_id):
    key = new_id()
    assert httpx.post(server.url + "/items", json={"id": key, "name": "n"}, timeout=30).status_code == 200
    # the pool's one thread runs this query for 4 s
    slow = threading.Thread(
        target=httpx.post, args=(server.url + "/slow",), kwargs={"json": {"id": key, "seconds": 4}, "timeout": 60}
    )
    slow.start()
    try:
        for _ in range(100):  # until the query holds the thread (then the check cannot get it)
            r = httpx.get(server.url + "/readyz", timeout=30)
            if r.status_code == 503:
                break
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable", "checks": {"pixeltable": "timeout", "database": "ok"}}
    finally:
        slow.join()
    assert httpx.get(server.url + "/readyz", timeout=30).json()["status"] == "ok"


def test_a_failed_part_is_named_and_its_error_only_logged(server):
    """Last in this module: it takes the server's Django database away."""
    shutil.rmtree(server.db_dir)  # Django's database can no longer be opened
    r = httpx.get(server.url + "/readyz", timeout=30)
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "checks": {"pixeltable": "ok", "database": "failed"}}
    assert str(server.db_dir) not in r.text
    log = server.log.read_text()
    assert "readiness check database failed" in log and "OperationalError" in log
