"""Webhooks: a real `manage.py serve` (one job worker) POSTs each finished job's final status, signed, to a local
receiver that fails the first attempts; and, in process, the address rules, the missing secret, the resumed
delivery, and how webhook_url is declared."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import free_port, serve_env, stop_process, wait_until_up

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120
WAIT_S = 60
SECRET = "hook-secret-1"
ATTEMPTS = 4
RETRY_DELAY = 0.3

SETTINGS = f"""
from project.settings import *

PXTSERVE = {{**PXTSERVE, "WEBHOOK_ATTEMPTS": {ATTEMPTS}, "WEBHOOK_RETRY_DELAY": {RETRY_DELAY}, "WEBHOOK_TIMEOUT": 5}}
"""

SERVICE = """
[[service]]
name = "hooks"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/flaky"
background = true
webhook_url = "${HOOK_BASE}/flaky"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/down"
background = true
webhook_url = "${HOOK_BASE}/down"

[[service.routes]]
type = "query"
path = "/slow"
query = "tests.pxt_app.slow_queries.slow_name"
background = true
webhook_url = "${HOOK_BASE}/ok"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/later"
background = true
webhook_url = "${HOOK_BASE}/ok"
"""


class Receiver:
    """A local webhook receiver: records every POST; /flaky answers 500 to a job's first two, /down always 500."""

    FLAKY_FAILURES = 2

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                job_id = json.loads(body).get("id")
                with receiver.lock:
                    earlier = [r for r in receiver.received if r["path"] == self.path and r["id"] == job_id]
                    receiver.received.append(
                        {
                            "path": self.path,
                            "id": job_id,
                            "body": body,
                            "headers": dict(self.headers),
                            "at": time.monotonic(),
                        }
                    )
                failing = self.path == "/down" or (self.path == "/flaky" and len(earlier) < receiver.FLAKY_FAILURES)
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, job_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.received if r["id"] == job_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.close()


class Server:
    def __init__(self, tmp: Path, receiver: Receiver) -> None:
        self.tmp = tmp
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        (tmp / "hook_settings.py").write_text(SETTINGS)
        (tmp / "hooks.toml").write_text(SERVICE)
        env = serve_env(
            tmp,
            PYTHONPATH=f"{tmp}:{REPO}",
            DJANGO_SETTINGS_MODULE="hook_settings",
            PXTSERVE_JOB_WORKERS="1",
            PXTSERVE_WEBHOOK_SECRET=SECRET,
            PXTSERVE_WEBHOOK_ALLOW_PRIVATE="1",
            HOOK_BASE=receiver.base,
        )
        command = [sys.executable, "manage.py", "serve", "hooks", "--config", str(tmp / "hooks.toml")]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        self.log_path = tmp / "serve.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def submit(self, path: str, body: dict[str, Any]) -> str:
        r = httpx.post(f"{self.base}{path}", json=body, timeout=30)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def poll(self, job_id: str) -> dict[str, Any]:
        return dict(httpx.get(f"{self.base}/jobs/{job_id}", timeout=30).json())

    def wait_for(self, job_id: str, *statuses: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while (body := self.poll(job_id))["status"] not in statuses:
            assert time.monotonic() < deadline, f"job {job_id}: {body}\n{self.log()}"
            time.sleep(0.1)
        return body

    def webhook_row(self, job_id: str) -> dict[str, Any]:
        with sqlite3.connect(self.tmp / "django.sqlite3") as db:
            db.row_factory = sqlite3.Row
            row = db.execute(
                "SELECT webhook_url, webhook_status, webhook_attempts, webhook_error, webhook_delivered_at "
                "FROM pxtserve_job WHERE id = ?",
                (job_id,),
            ).fetchone()
        return dict(row)

    def wait_webhook(self, job_id: str, status: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while (row := self.webhook_row(job_id))["webhook_status"] != status:
            assert time.monotonic() < deadline, f"job {job_id}: {row}\n{self.log()}"
            time.sleep(0.1)
        return row


@pytest.fixture(scope="module")
def server(pxt_tables, receiver, tmp_path_factory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("webhooks"), receiver)
    try:
        wait_until_up(f"{started.base}/docs", started.process, START_TIMEOUT_S, started.log)
        yield started
    finally:
        stop_process(started.process)


def signed(request: dict[str, Any]) -> bool:
    expected = hmac.new(SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(request["headers"]["X-Pxtserve-Signature"], expected)


def test_a_signed_delivery_is_retried_with_backoff_until_accepted(server, receiver, new_id):
    job_id = server.submit("/flaky", {"id": new_id(), "name": "hooked"})
    final = server.wait_for(job_id, "done", "error")
    assert final["status"] == "done", final
    row = server.wait_webhook(job_id, "delivered")
    assert row["webhook_attempts"] == 3 and row["webhook_delivered_at"] and row["webhook_error"] == "", row
    assert row["webhook_url"] == f"{receiver.base}/flaky"  # ${HOOK_BASE} expanded from the environment
    requests = receiver.of(job_id)
    assert [r["path"] for r in requests] == ["/flaky"] * 3
    assert all(signed(r) for r in requests)
    assert len({r["body"] for r in requests}) == 1  # every attempt sends the same bytes
    assert json.loads(requests[0]["body"]) == {"id": job_id, "route": "POST /flaky", **server.poll(job_id)}
    assert requests[0]["headers"]["Content-Type"] == "application/json"
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(requests)]
    assert gaps[0] >= RETRY_DELAY * 0.9 and gaps[1] >= 2 * RETRY_DELAY * 0.9, gaps


def test_a_delivery_gives_up_after_the_attempts_and_the_job_stays_done(server, receiver, new_id):
    job_id = server.submit("/down", {"id": new_id(), "name": "unheard"})
    assert server.wait_for(job_id, "done", "error")["status"] == "done"
    row = server.wait_webhook(job_id, "failed")
    assert row["webhook_attempts"] == ATTEMPTS and row["webhook_delivered_at"] is None, row
    assert f"gave up after {ATTEMPTS} attempts" in row["webhook_error"] and "answered 500" in row["webhook_error"]
    assert len(receiver.of(job_id)) == ATTEMPTS
    assert server.poll(job_id)["status"] == "done"


def test_a_cancelled_job_is_delivered_too(server, receiver, pxt_tables, new_id):
    key = new_id()
    pxt_tables.items.insert([{"id": key, "name": "slow"}])
    slow = server.submit("/slow", {"id": key, "seconds": 2})
    server.wait_for(slow, "running")
    later = server.submit("/later", {"id": new_id(), "name": "never"})
    r = httpx.post(f"{server.base}/jobs/{later}/cancel", timeout=30)
    assert r.status_code == 200, r.text
    row = server.wait_webhook(later, "delivered")
    assert row["webhook_attempts"] == 1
    (request,) = receiver.of(later)
    assert signed(request) and json.loads(request["body"]) == {"id": later, "route": "POST /later", **r.json()}
    server.wait_webhook(slow, "delivered")
    assert json.loads(receiver.of(slow)[0]["body"])["result"]["rows"][0]["name"] == "slow"


# --- in process (tests/settings.py: django-q2 in sync mode, so a queued delivery runs at once) --------------------


def final_job(url: str, **fields: Any) -> Any:
    from django.utils import timezone

    from pxtserve.models import Job

    defaults = {
        "route": "hooks: POST /x",
        "status": Job.Status.DONE,
        "result": {"ok": True},
        "finished_at": timezone.now(),
        "webhook_url": url,
        "webhook_status": Job.WebhookStatus.PENDING,
    }
    return Job.objects.create(**{**defaults, **fields})


def webhook_settings(**overrides: Any) -> Any:
    from django.test import override_settings

    values = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_RETRY_DELAY": 0.0, "WEBHOOK_ATTEMPTS": 3, **overrides}
    return override_settings(PXTSERVE=values)


@pytest.mark.django_db(transaction=True)
def test_a_private_address_is_refused_without_allow_private_and_never_contacted(receiver):
    from pxtserve.jobs.webhooks import deliver
    from pxtserve.models import Job

    job = final_job(f"{receiver.base}/ok")
    with webhook_settings():
        assert deliver(job.id) == Job.WebhookStatus.FAILED
    job.refresh_from_db()
    assert job.webhook_status == "failed" and job.webhook_attempts == 0
    assert "non-public address" in job.webhook_error and "WEBHOOK_ALLOW_PRIVATE" in job.webhook_error
    assert receiver.of(job.id) == []
    # allowed, the same delivery goes through
    again = final_job(f"{receiver.base}/ok")
    with webhook_settings(WEBHOOK_ALLOW_PRIVATE=True):
        assert deliver(again.id) == Job.WebhookStatus.DELIVERED
    assert len(receiver.of(again.id)) == 1


@pytest.mark.django_db(transaction=True)
def test_without_a_secret_nothing_is_sent_and_the_check_and_the_router_warn(receiver, pxt_tables, caplog):
    from django.test import override_settings

    from pxtserve import PixeltableRouter
    from pxtserve.checks import check_webhook_secret
    from pxtserve.jobs.webhooks import MISSING_SECRET, deliver

    job = final_job(f"{receiver.base}/ok")
    with override_settings(PXTSERVE={"WEBHOOK_ALLOW_PRIVATE": True}):
        assert deliver(job.id) == "failed"
        router = PixeltableRouter()
        router.add_insert_route(pxt_tables.items, path="/unsigned", background=True, webhook_url="https://example.com/")
        (warning,) = [w for w in check_webhook_secret(None) if "/unsigned" in w.msg]
        assert warning.id == "pxtserve.W006"
    # what `serve` shows: it runs its checks before it reads its service, and its router says it as it adds the route
    assert f"POST /unsigned declare(s) webhook_url, but {MISSING_SECRET}" in caplog.text
    job.refresh_from_db()
    assert job.webhook_error == MISSING_SECRET and receiver.of(job.id) == []
    with webhook_settings():
        assert not [w for w in check_webhook_secret(None) if "/unsigned" in w.msg]


@pytest.mark.django_db(transaction=True)
def test_a_delivery_a_dead_worker_left_is_resumed_with_the_attempts_left(receiver):
    from django.utils import timezone

    from pxtserve.jobs import recovery

    long_ago = timezone.now() - timedelta(days=1)
    # it made 2 of its 3 attempts (500s from /down) before its worker died
    stalled = final_job(f"{receiver.base}/down", finished_at=long_ago, webhook_attempts=2, webhook_error="answered 500")
    fresh = final_job(f"{receiver.base}/ok")  # its worker may be delivering it right now
    with webhook_settings(WEBHOOK_ALLOW_PRIVATE=True):
        assert recovery.start_up()["webhooks"] == 1
    stalled.refresh_from_db()
    fresh.refresh_from_db()
    assert len(receiver.of(stalled.id)) == 1  # the one attempt it had left
    assert stalled.webhook_status == "failed" and stalled.webhook_attempts == 3
    assert fresh.webhook_status == "pending" and receiver.of(fresh.id) == []


def test_webhook_url_is_declared_once_for_toml_cli_and_python(pxt_tables, monkeypatch):
    from pxtserve import PixeltableRouter
    from pxtserve.config import ServiceConfigError
    from pxtserve.errors import RouteDefinitionError
    from pxtserve.route_flags import ROUTE_FLAGS, raw_route
    from tests.conftest import service_from_toml

    with pytest.raises(RouteDefinitionError) as raised:
        PixeltableRouter().add_insert_route(pxt_tables.items, path="/sync", webhook_url="https://example.com/hook")
    assert raised.value.field == "webhook_url" and "background" in raised.value.message
    with pytest.raises(RouteDefinitionError, match="http"):
        PixeltableRouter().add_insert_route(pxt_tables.items, path="/bg", background=True, webhook_url="ftp://x/")

    toml = '[[service]]\nname = "t"\n[[service.routes]]\ntype = "insert"\ntable = "pxtserve_test.items"\n'
    toml += 'path = "/bg"\nbackground = true\nwebhook_url = "https://hooks.example.com/${HOOK_TOKEN}"\n'
    monkeypatch.setenv("HOOK_TOKEN", "t0ken")
    assert service_from_toml(toml).routes[0].webhook_url == "https://hooks.example.com/t0ken"
    monkeypatch.delenv("HOOK_TOKEN")
    with pytest.raises(ServiceConfigError, match="field 'webhook_url'.*HOOK_TOKEN, which is not set"):
        service_from_toml(toml)
    monkeypatch.setenv("HOOK_TOKEN", "t0ken")
    with pytest.raises(ServiceConfigError, match="field 'webhook_url'.*needs background = true"):
        service_from_toml(toml.replace("background = true\n", ""))

    assert "--webhook-url" in {flag.option for flag in ROUTE_FLAGS}
    route = raw_route("insert", {"table": "t.x", "path": "/bg", "background": True, "webhook_url": "https://h/"})
    assert route["webhook_url"] == "https://h/"
