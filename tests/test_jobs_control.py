"""Job control over a real `manage.py serve` with its worker cluster (one worker, so later jobs wait their turn):
timestamps and the running status, cancelling, listing; and the admin's cancel and retry actions (in process)."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import PIL.Image
import pytest

from tests.processes import free_port, serve_env, stop_process, wait_until_up

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 120
KEY = "ctl-key"

SERVICE = """
[[service]]
name = "control"
prefix = "/api"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"
background = true

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/secret/items"
background = true
auth = "api_key"

[[service.routes]]
type = "query"
path = "/slow"
query = "tests.pxt_app.slow_queries.slow_name"
background = true

[[service.routes]]
type = "insert"
table = "pxtserve_test.media"
path = "/uploads"
inputs = ["id", "note"]
uploadfile_inputs = ["image"]
outputs = ["id", "note"]
background = true
"""


class Server:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/api"
        (tmp / "control.toml").write_text(SERVICE)
        env = serve_env(tmp, PXTSERVE_JOB_WORKERS="1", PXTSERVE_API_KEYS=KEY)
        command = [sys.executable, "manage.py", "serve", "control", "--config", str(tmp / "control.toml")]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.log_path = tmp / "serve.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def submit(self, path: str, body: dict[str, Any], **kwargs: Any) -> str:
        r = httpx.post(f"{self.base}{path}", json=body, timeout=30, **kwargs)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def poll(self, job_id: str, **kwargs: Any) -> dict[str, Any]:
        r = httpx.get(f"{self.base}/jobs/{job_id}", timeout=30, **kwargs)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def cancel(self, job_id: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.base}/jobs/{job_id}/cancel", timeout=30, **kwargs)

    def wait_for(self, job_id: str, *statuses: str, **kwargs: Any) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while (body := self.poll(job_id, **kwargs))["status"] not in statuses:
            assert time.monotonic() < deadline, f"job {job_id} is {body['status']}, not {statuses}\n{self.log()}"
            time.sleep(0.1)
        return body

    def uploads_of(self, job_id: str) -> dict[str, str]:
        with sqlite3.connect(self.tmp / "django.sqlite3") as db:
            return dict(
                json.loads(db.execute("SELECT uploads FROM pxtserve_job WHERE id = ?", (job_id,)).fetchone()[0])
            )

    def list(self, expect: int = 200, **params: Any) -> Any:
        headers = params.pop("headers", {})
        r = httpx.get(f"{self.base}/jobs", params=params, headers=headers, timeout=30)
        assert r.status_code == expect, r.text
        return r.json()


@pytest.fixture(scope="module")
def server(pxt_tables, tmp_path_factory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("jobs-control"))
    try:
        wait_until_up(f"{started.base}/docs", started.process, START_TIMEOUT_S, started.log)
        yield started
    finally:
        stop_process(started.process)


def moment(value: str | None) -> datetime:
    assert value is not None
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


def start_slow_job(server: Server, pxt_tables: Any, new_id: Any, seconds: float) -> str:
    """A job that keeps the only worker busy for `seconds`; returned once it runs."""
    key = new_id()
    pxt_tables.items.insert([{"id": key, "name": "slow"}])
    job_id = server.submit("/slow", {"id": key, "seconds": seconds})
    server.wait_for(job_id, "running")
    return job_id


def png() -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", (4, 4), "green").save(buf, "PNG")
    return buf.getvalue()


def test_timestamps_and_the_running_status(server, pxt_tables, new_id):
    job_id = start_slow_job(server, pxt_tables, new_id, seconds=3)
    running = server.poll(job_id)
    assert running["status"] == "running" and running["finished_at"] is None, running
    assert moment(running["created_at"]) <= moment(running["started_at"])
    r = server.cancel(job_id)
    assert r.status_code == 409 and r.json()["detail"]["error_code"] == "JOB_RUNNING", r.text
    assert "cannot be interrupted" in r.json()["detail"]["message"]
    done = server.wait_for(job_id, "done", "error")
    assert done["status"] == "done", done
    assert done["created_at"] == running["created_at"] and done["started_at"] == running["started_at"]
    assert moment(done["started_at"]) <= moment(done["finished_at"])
    r = server.cancel(job_id)
    assert r.status_code == 409 and r.json()["detail"]["error_code"] == "JOB_FINISHED", r.text


def test_a_cancelled_pending_job_never_runs_and_its_uploads_are_removed(server, pxt_tables, new_id):
    slow = start_slow_job(server, pxt_tables, new_id, seconds=3)
    key, after = new_id(), new_id()
    r = httpx.post(
        f"{server.base}/uploads", data={"id": str(key), "note": "never"}, files={"image": ("p.png", png())}, timeout=30
    )
    assert r.status_code == 202, r.text
    cancelled = r.json()["id"]
    queued_after = server.submit("/items", {"id": after, "name": "after"})
    upload = Path(server.uploads_of(cancelled)["image"])
    assert upload.is_file()
    assert server.poll(cancelled)["status"] == "pending"

    r = server.cancel(cancelled)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "cancelled" and body["started_at"] is None and body["finished_at"] is not None, body
    assert server.poll(cancelled) == body
    assert not upload.exists()
    r = server.cancel(cancelled)
    assert r.status_code == 409 and r.json()["detail"]["error_code"] == "JOB_FINISHED"

    # the worker reaches the cancelled job's task (queued before the next one) and skips it
    assert server.wait_for(slow, "done", "error")["status"] == "done"
    assert server.wait_for(queued_after, "done", "error")["status"] == "done"
    assert server.poll(cancelled) == body
    media = pxt_tables.media
    assert media.where(media.id == key).count() == 0


def test_cancel_and_poll_follow_the_routes_auth(server, new_id):
    headers = {"X-API-Key": KEY}
    job_id = server.submit("/secret/items", {"id": new_id(), "name": "s"}, headers=headers)
    assert server.cancel(job_id).status_code == 401
    assert server.cancel(job_id, headers={"X-API-Key": "wrong"}).status_code == 403
    assert server.cancel("0" * 32).status_code == 404
    server.wait_for(job_id, "done", "error", headers=headers)


def test_listing_newest_first_paged_filtered_and_behind_each_routes_auth(server, new_id):
    headers = {"X-API-Key": KEY}
    public = [server.submit("/items", {"id": new_id(), "name": f"p{i}"}) for i in range(3)]
    secret = server.submit("/secret/items", {"id": new_id(), "name": "s"}, headers=headers)
    for job_id in public:
        server.wait_for(job_id, "done", "error")
    server.wait_for(secret, "done", "error", headers=headers)

    everything = server.list(limit=500, headers=headers)
    assert everything["next_cursor"] is None
    jobs = everything["jobs"]
    ids = [job["id"] for job in jobs]
    assert secret in ids and set(public) <= set(ids)
    created = [moment(job["created_at"]) for job in jobs]
    assert created == sorted(created, reverse=True)
    assert ids.index(secret) < ids.index(public[-1]) < ids.index(public[0])  # newest first
    newest = jobs[ids.index(public[-1])]
    assert newest["route"] == "POST /items" and newest["job_url"] == f"{server.base}/jobs/{public[-1]}"
    assert {k: v for k, v in newest.items() if k not in ("id", "route", "job_url")} == server.poll(public[-1])

    # without the key (or with a wrong one) the protected route's jobs are left out, not refused
    for auth in ({}, {"X-API-Key": "wrong"}):
        visible = [job["id"] for job in server.list(limit=500, headers=auth)["jobs"]]
        assert secret not in visible and set(public) <= set(visible)
        assert visible == [job["id"] for job in jobs if job["route"] != "POST /secret/items"]

    # pages of 2 add up to the whole list, in order
    paged, cursor = [], None
    while True:
        page = server.list(limit=2, headers=headers, **({"cursor": cursor} if cursor else {}))
        assert len(page["jobs"]) <= 2
        paged += [job["id"] for job in page["jobs"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert paged == ids

    secrets = [job["id"] for job in jobs if job["route"] == "POST /secret/items"]
    assert secret in secrets
    assert [job["id"] for job in server.list(route="POST /secret/items", headers=headers)["jobs"]] == secrets
    assert [job["id"] for job in server.list(route="/secret/items")["jobs"]] == []
    assert {job["route"] for job in server.list(route="/items", limit=500)["jobs"]} == {"POST /items"}
    done = server.list(status="done", limit=500, headers=headers)["jobs"]
    assert {job["status"] for job in done} == {"done"} and set(public) <= {job["id"] for job in done}
    assert all(job["status"] == "cancelled" for job in server.list(status="cancelled")["jobs"])
    assert server.list(route="/nowhere")["jobs"] == []


@pytest.mark.parametrize(
    ("params", "name"),
    [({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"limit": "x"}, "limit"), ({"status": "lost"}, "status")],
)
def test_a_bad_listing_parameter_is_a_422_naming_it(server, params, name):
    detail = server.list(expect=422, **params)["detail"]
    assert any(name in item["loc"] for item in detail), detail


def test_a_bad_cursor_is_a_422_naming_it(server):
    detail = server.list(expect=422, cursor="not-a-cursor")["detail"]
    assert detail["error_code"] == "INVALID_CURSOR" and detail["message"].startswith("cursor:"), detail


def test_openapi_documents_listing_and_cancelling(server):
    doc = httpx.get(f"{server.base}/openapi.json", timeout=30).json()
    listing = doc["paths"]["/api/jobs"]["get"]
    assert listing["operationId"] == "list_jobs"
    assert {p["name"] for p in listing["parameters"]} == {"status", "route", "limit", "cursor"}
    cancel = doc["paths"]["/api/jobs/{job_id}/cancel"]["post"]
    assert cancel["operationId"] == "cancel_job" and {"200", "404", "409"} <= set(cancel["responses"])
    assert "cancelled" in doc["components"]["schemas"]["JobStatus"]["properties"]["status"]["enum"]


# --- the admin's actions, in process (django-q2 in sync mode: a retried job runs inside the action) --------------

ADMIN_SERVICE = """
[[service]]
# its own name: tests/test_jobs.py serves a "jobs" service declared otherwise in this same process
name = "jobs-admin"
prefix = "/api"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/bg/items"
background = true

[[service.routes]]
type = "insert"
table = "pxtserve_test.media"
path = "/bg/media"
inputs = ["id", "note"]
uploadfile_inputs = ["image"]
outputs = ["id", "note"]
background = true
"""
ROUTE = "jobs-admin: POST /bg/items"


@pytest.fixture
def admin_client():
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


def run_action(client: Any, action: str, ids: list[str]) -> list[str]:
    from django.test import override_settings

    with override_settings(ROOT_URLCONF="project.urls"):
        r = client.post("/admin/pxtserve/job/", {"action": action, "_selected_action": ids}, follow=True)
    assert r.status_code == 200
    return [str(m) for m in r.context["messages"]]


@pytest.mark.django_db(transaction=True)
def test_admin_cancels_pending_jobs_and_skips_the_others(serve, admin_client, tmp_path):
    from pxtserve.models import Job

    serve(ADMIN_SERVICE)
    upload = tmp_path / "waiting.png"
    upload.write_bytes(png())
    pending = Job.objects.create(route=ROUTE, inputs={"id": 1, "name": "p"}, uploads={"image": str(upload)})
    done = Job.objects.create(route=ROUTE, status=Job.Status.DONE)
    messages = run_action(admin_client, "cancel_selected", [pending.id, done.id])
    assert Job.objects.get(pk=pending.pk).status == Job.Status.CANCELLED
    assert Job.objects.get(pk=done.pk).status == Job.Status.DONE
    assert not upload.exists()
    assert any(f"cancelled 1 job(s): {pending.id}" in m for m in messages), messages
    assert any("skipped 1 job(s)" in m and done.id in m and "already finished" in m for m in messages), messages


@pytest.mark.django_db(transaction=True)
def test_admin_retries_failed_jobs_as_new_jobs(serve, admin_client, new_id, tmp_path):
    from pxtserve.models import Job

    client = serve(ADMIN_SERVICE)
    key = new_id()
    assert (
        client.post("/api/bg/items", {"id": key, "name": "first"}, content_type="application/json").status_code == 202
    )
    r = client.post("/api/bg/items", {"id": key, "name": "again"}, content_type="application/json")
    failed = Job.objects.get(pk=r.json()["id"])
    assert failed.status == Job.Status.ERROR
    # a failed upload job whose file is still there (it failed before a worker took it), and one whose file is gone
    kept = tmp_path / "kept.png"
    kept.write_bytes(png())
    media_key = new_id()
    with_upload = Job.objects.create(
        route="jobs-admin: POST /bg/media",
        inputs={"id": media_key, "note": "retried"},
        uploads={"image": str(kept)},
        status=Job.Status.ERROR,
    )
    lost = Job.objects.create(
        route="jobs-admin: POST /bg/media",
        inputs={"id": new_id()},
        uploads={"image": str(tmp_path / "gone.png")},
        status=Job.Status.ERROR,
    )
    done = Job.objects.create(route=ROUTE, status=Job.Status.DONE)

    messages = run_action(admin_client, "retry_selected", [failed.id, with_upload.id, lost.id, done.id])
    retried = {job.retry_of: job for job in Job.objects.filter(retry_of__in=[failed.id, with_upload.id])}
    assert set(retried) == {failed.id, with_upload.id}
    again = retried[failed.id]
    assert again.id != failed.id and again.route == ROUTE and again.inputs == failed.inputs
    # the key is still taken: the retry ran (sync mode) and failed the same way, as a job of its own
    assert again.status == Job.Status.ERROR and again.error == failed.error
    media_job = retried[with_upload.id]
    assert media_job.status == Job.Status.DONE, media_job.error
    assert media_job.result == {"id": media_key, "note": "retried"}
    assert kept.exists()  # the old job keeps its file; the new job ran on a copy
    assert not Job.objects.filter(retry_of__in=[lost.id, done.id]).exists()
    assert any("retried 2 job(s)" in m and f"{failed.id} as {again.id}" in m for m in messages), messages
    skipped = next(m for m in messages if m.startswith("skipped"))
    assert f"{lost.id}: its upload(s) image are no longer available" in skipped
    assert f"{done.id}: only failed jobs are retried" in skipped


@pytest.mark.django_db(transaction=True)
def test_admin_actions_need_the_change_permission(serve, new_id):
    from django.contrib.auth.models import Permission, User
    from django.test import Client, override_settings

    from pxtserve.models import Job

    serve(ADMIN_SERVICE)
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client = Client()
    client.force_login(viewer)
    pending = Job.objects.create(route=ROUTE, inputs={"id": new_id(), "name": "p"})
    with override_settings(ROOT_URLCONF="project.urls"):
        page = client.get("/admin/pxtserve/job/").content.decode()
        assert "cancel_selected" not in page
        client.post("/admin/pxtserve/job/", {"action": "cancel_selected", "_selected_action": [pending.id]})
    assert Job.objects.get(pk=pending.pk).status == Job.Status.PENDING


@pytest.mark.django_db(transaction=True)
def test_cancelled_jobs_are_pruned_after_the_retention_like_finished_ones():
    from datetime import timedelta

    from django.utils import timezone

    from pxtserve.jobs import recovery
    from pxtserve.models import Job

    old = Job.objects.create(route=ROUTE, status=Job.Status.CANCELLED, finished_at=timezone.now() - timedelta(days=8))
    recent = Job.objects.create(route=ROUTE, status=Job.Status.CANCELLED, finished_at=timezone.now())
    assert recovery.prune_jobs() == 1
    assert not Job.objects.filter(pk=old.pk).exists() and Job.objects.filter(pk=recent.pk).exists()
