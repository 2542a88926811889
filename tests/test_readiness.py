"""/readyz over a real server process: each check is bounded by READY_CHECK_TIMEOUT, a busy Pixeltable
pool is a "timeout" rather than a long wait, and a failed part is named without its error (logged instead)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import serving_site

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
# in a directory of its own, which a test takes away
DATABASES = {"default": {**DATABASES["default"], "NAME": "{db}"}}
"""


class Server:
    def __init__(self, url: str, log: Path, db_dir: Path) -> None:
        self.url, self.log, self.db_dir = url, log, db_dir


@pytest.fixture(scope="module")
def server(pxt_tables, tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("ready")
    db_dir = tmp / "db"
    db_dir.mkdir()
    with serving_site(tmp, SERVICE, SETTINGS.replace("{db}", str(db_dir / "django.sqlite3"))) as (url, log):
        yield Server(url, log, db_dir)


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
