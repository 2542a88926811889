"""Idempotent retries over a real `manage.py serve --workers 2`: Idempotency-Key on every route that changes data.

One server for the module, its Django database a SQLite file the tests read (the keys' rows, the jobs) and,
to play a past or another node, change. Its settings set IDEMPOTENCY_TTL to one hour (the default is a day).
"""

from __future__ import annotations

import io
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import PIL.Image
import psutil
import pytest

from tests.processes import REPO, free_port, serve_env, stop_group, wait_until_up

SETTINGS = """
from project.settings import *

PXTSERVE = {**PXTSERVE, "IDEMPOTENCY_TTL": 3600}
"""

SERVICE = """
[[service]]
name = "idem"
modules = ["tests.pxt_app.schema", "tests.pxt_app.idempotency_schema"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.idem_events"
path = "/events"

[[service.routes]]
type = "query"
path = "/events/named"
query = "tests.pxt_app.idempotency_schema.events_named"
method = "get"

[[service.routes]]
type = "update"
table = "pxtserve_test.idem_notes"
path = "/notes/update"

[[service.routes]]
type = "delete"
table = "pxtserve_test.idem_notes"
path = "/notes/delete"

[[service.routes]]
type = "insert"
table = "pxtserve_test.idem_notes"
path = "/notes/bg"
background = true

[[service.routes]]
type = "query"
path = "/notes/lookup"
query = "tests.pxt_app.idempotency_schema.note_by_id"
method = "get"
one_row = true

[[service.routes]]
type = "compute"
table = "pxtserve_test.idem_notes"
path = "/notes/preview"

[service.routes.export_sql]
db_connect = "sqlite:///{export_db}"
table = "idem_export"

[[service.routes]]
type = "insert"
table = "pxtserve_test.images"
path = "/images"
uploadfile_inputs = ["image"]
outputs = ["thumb"]
return_fileresponse = true
"""

START_TIMEOUT_S = 180
REPLAYED = "idempotent-replayed"


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    tmp: Path

    def log(self) -> str:
        return (self.tmp / "serve.log").read_text(errors="replace")

    def post(
        self, path: str, body: dict[str, Any], key: str | bytes | None = None, timeout: float = 60
    ) -> httpx.Response:
        headers = {} if key is None else {"Idempotency-Key": key}
        return httpx.post(f"{self.base}{path}", json=body, headers=headers, timeout=timeout)

    def db(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run SQL on the server's Django database (what another node sharing it would see and do)."""
        with sqlite3.connect(self.tmp / "django.sqlite3", timeout=20) as conn:
            return conn.execute(sql, args).fetchall()

    def events(self, name: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.base}/events/named", params={"name": name}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["rows"]

    def note(self, note_id: int) -> dict[str, Any] | None:
        r = httpx.get(f"{self.base}/notes/lookup", params={"id": note_id}, timeout=30)
        return r.json() if r.status_code == 200 else None

    def exported(self, note_id: int) -> int:
        with sqlite3.connect(self.tmp / "export.sqlite3", timeout=20) as conn:
            return conn.execute("SELECT count(*) FROM idem_export WHERE id = ?", (note_id,)).fetchone()[0]


@pytest.fixture(scope="module")
def server(pxt_tables, tmp_path_factory) -> Iterator[Server]:
    import tests.pxt_app.idempotency_schema  # noqa: F401  (its tables exist before the workers start at once)

    tmp = tmp_path_factory.mktemp("idempotency")
    export_db = tmp / "export.sqlite3"
    with sqlite3.connect(export_db) as conn:
        conn.execute("CREATE TABLE idem_export (id INTEGER PRIMARY KEY, title TEXT, title_upper TEXT)")
    (tmp / "idem_settings.py").write_text(SETTINGS)
    (tmp / "idem.toml").write_text(SERVICE.format(export_db=export_db))
    port = free_port()
    env = serve_env(tmp, PYTHONPATH=f"{tmp}:{REPO}", DJANGO_SETTINGS_MODULE="idem_settings")
    command = [sys.executable, "manage.py", "serve", "idem", "--config", str(tmp / "idem.toml")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--no-workers", "--no-access-log"]
    with open(tmp / "serve.log", "w") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    started = Server(f"http://127.0.0.1:{port}", process, tmp)
    try:
        wait_until_up(f"{started.base}/healthz", process, START_TIMEOUT_S, started.log, processes=2)
        yield started
    finally:
        stop_group(process)


def new_key() -> str:
    return f"key-{uuid.uuid4().hex}"


def new_name() -> str:
    return f"n-{uuid.uuid4().hex[:12]}"


def test_an_insert_runs_once_and_its_repeat_gets_the_first_answer(server):
    key, name = new_key(), new_name()
    first = server.post("/events", {"name": name, "delay": 0}, key)
    assert first.status_code == 200, first.text
    assert REPLAYED not in first.headers
    # the same request in other JSON (order, spacing): the key compares what the route validated, not bytes
    again = httpx.post(
        f"{server.base}/events",
        content=f'{{ "delay": 0.0,   "name": "{name}" }}',
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        timeout=60,
    )
    assert again.status_code == 200, again.text
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert len(server.events(name)) == 1
    # without a key, the same body is a request of its own
    assert server.post("/events", {"name": name, "delay": 0}).status_code == 200
    assert len(server.events(name)) == 2


def test_the_key_with_another_body_is_a_422_naming_the_header(server):
    key, name = new_key(), new_name()
    assert server.post("/events", {"name": name, "delay": 0}, key).status_code == 200
    r = server.post("/events", {"name": name + "-other", "delay": 0}, key)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["error_code"] == "IDEMPOTENCY_KEY_REUSED"
    assert "Idempotency-Key" in r.json()["detail"]["message"]
    assert server.events(name + "-other") == []
    # the key is per route: the same key on another route is another key
    assert server.post("/notes/delete", {"id": -1}, key).status_code == 200


def test_a_repeat_while_the_first_runs_is_a_409_then_gets_its_answer(server):
    key, name = new_key(), new_name()
    body = {"name": name, "delay": 3}
    results: list[httpx.Response] = []
    first = threading.Thread(target=lambda: results.append(server.post("/events", body, key)))
    first.start()
    try:
        deadline = time.monotonic() + 30
        while not server.db("SELECT 1 FROM pxtserve_idempotencykey WHERE key = ?", key):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        running = server.post("/events", body, key)
        assert running.status_code == 409, running.text
        assert running.json()["detail"]["error_code"] == "IDEMPOTENCY_KEY_IN_USE"
        assert running.headers["retry-after"] == "1"
    finally:
        first.join(60)
    assert results[0].status_code == 200, results[0].text
    after = server.post("/events", body, key)
    assert after.status_code == 200 and after.headers[REPLAYED] == "true"
    assert after.json() == results[0].json() == {"name": name, "delay": 3.0, "shout": name.upper()}
    assert len(server.events(name)) == 1


def test_a_4xx_answer_is_kept_and_replayed(server, new_id):
    key, note_id = new_key(), new_id()
    missing = server.post("/notes/update", {"id": note_id, "title": "a"}, key)
    assert missing.status_code == 404, missing.text
    _insert_note(server, note_id, "b")  # the row appears meanwhile: the retry would now update it
    r = server.post("/notes/update", {"id": note_id, "title": "a"}, key)
    assert r.status_code == 404 and r.headers[REPLAYED] == "true"
    assert r.content == missing.content
    assert server.note(note_id) == {"id": note_id, "title": "b"}


def test_update_and_delete_replays_write_nothing(server, new_id):
    note_id = new_id()
    _insert_note(server, note_id, "zero")
    update_key, delete_key = new_key(), new_key()
    updated = server.post("/notes/update", {"id": note_id, "title": "a"}, update_key)
    assert updated.status_code == 200 and updated.json()["title"] == "a", updated.text
    assert server.post("/notes/update", {"id": note_id, "title": "b"}).status_code == 200
    replayed = server.post("/notes/update", {"id": note_id, "title": "a"}, update_key)
    assert replayed.headers[REPLAYED] == "true" and replayed.json() == updated.json()
    assert server.note(note_id) == {"id": note_id, "title": "b"}

    deleted = server.post("/notes/delete", {"id": note_id}, delete_key)
    assert deleted.status_code == 200 and deleted.json() == {"num_rows": 1}, deleted.text
    _insert_note(server, note_id, "again")
    replayed = server.post("/notes/delete", {"id": note_id}, delete_key)
    assert replayed.headers[REPLAYED] == "true" and replayed.json() == {"num_rows": 1}
    assert server.note(note_id) == {"id": note_id, "title": "again"}


def _insert_note(server: Server, note_id: int, title: str) -> None:
    """Insert a note through Pixeltable itself (the service has no synchronous insert route on it)."""
    import pixeltable as pxt

    pxt.get_table("pxtserve_test.idem_notes").insert([{"id": note_id, "title": title}])
    deadline = time.monotonic() + 10
    while (server.note(note_id) or {}).get("title") != title:
        assert time.monotonic() < deadline, "the server does not see the inserted note"
        time.sleep(0.1)


def test_compute_with_export_sql_exports_once_and_a_5xx_releases_the_key(server, new_id):
    note_id, key = new_id(), new_key()
    body = {"id": note_id, "title": "exported"}
    first = server.post("/notes/preview", body, key)
    assert first.status_code == 200, first.text
    replayed = server.post("/notes/preview", body, key)
    assert replayed.headers[REPLAYED] == "true" and replayed.content == first.content
    assert server.exported(note_id) == 1
    # another key: the export meets the row already exported (the target's primary key), a 500 ...
    other = new_key()
    failed = server.post("/notes/preview", body, other)
    assert failed.status_code == 500 and failed.json()["detail"]["error_code"] == "EXPORT_FAILED", failed.text
    # ... which is not kept: the retry runs again (not replayed, not "still running")
    again = server.post("/notes/preview", body, other)
    assert again.status_code == 500 and REPLAYED not in again.headers
    with sqlite3.connect(server.tmp / "export.sqlite3") as conn:
        conn.execute("DELETE FROM idem_export WHERE id = ?", (note_id,))
    ran = server.post("/notes/preview", body, other)
    assert ran.status_code == 200 and REPLAYED not in ran.headers, ran.text
    assert server.exported(note_id) == 1


def test_a_background_repeat_gets_the_same_job_handle_and_makes_no_job(server, new_id):
    key, body = new_key(), {"id": new_id(), "title": "bg"}
    jobs_before = server.db("SELECT count(*) FROM pxtserve_job")[0][0]
    first = server.post("/notes/bg", body, key)
    assert first.status_code == 202, first.text
    replayed = server.post("/notes/bg", body, key)
    assert replayed.status_code == 202 and replayed.headers[REPLAYED] == "true"
    assert replayed.json() == first.json()
    assert server.db("SELECT count(*) FROM pxtserve_job")[0][0] == jobs_before + 1


def test_a_request_whose_client_left_still_records_its_answer(server):
    key, name = new_key(), new_name()
    body = {"name": name, "delay": 2}
    with pytest.raises(httpx.ReadTimeout):
        server.post("/events", body, key, timeout=0.5)  # hangs up while the insert runs
    deadline = time.monotonic() + 30
    while server.db("SELECT status FROM pxtserve_idempotencykey WHERE key = ?", key) != [("done",)]:
        assert time.monotonic() < deadline, server.db("SELECT * FROM pxtserve_idempotencykey WHERE key = ?", key)
        time.sleep(0.1)
    r = server.post("/events", body, key)
    assert r.status_code == 200 and r.headers[REPLAYED] == "true", r.text
    assert len(server.events(name)) == 1


def test_routes_that_change_nothing_ignore_the_header(server):
    r = httpx.get(f"{server.base}/events/named", params={"name": "none"}, headers={"Idempotency-Key": ""})
    assert r.status_code == 200 and REPLAYED not in r.headers, r.text
    document = httpx.get(f"{server.base}/openapi.json").json()
    insert_params = document["paths"]["/events"]["post"]["parameters"]
    assert [p["name"] for p in insert_params if p["in"] == "header"] == ["Idempotency-Key"]
    upload_params = document["paths"]["/images"]["post"]["parameters"]
    assert [p["name"] for p in upload_params] == ["Idempotency-Key"]
    query_params = document["paths"]["/events/named"]["get"]["parameters"]
    assert "Idempotency-Key" not in [p["name"] for p in query_params]


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", b"caf\xe9"], ids=["empty", "long", "tab", "latin1"])
def test_a_bad_key_is_a_400_naming_the_header(server, key):
    name = new_name()
    r = server.post("/events", {"name": name, "delay": 0}, key)
    assert r.status_code == 400, r.text
    assert r.json()["detail"]["error_code"] == "INVALID_IDEMPOTENCY_KEY"
    assert "Idempotency-Key" in r.json()["detail"]["message"]
    assert server.events(name) == []


def test_uploads_compare_by_content_and_file_answers_are_replayed(server, new_id):
    key, image_id = new_key(), new_id()

    def upload(color: str) -> httpx.Response:
        buf = io.BytesIO()
        PIL.Image.new("RGB", (20, 20), color).save(buf, "PNG")
        files = {"image": ("in.png", buf.getvalue(), "image/png")}
        return httpx.post(
            f"{server.base}/images", data={"id": str(image_id)}, files=files, headers={"Idempotency-Key": key}
        )

    first = upload("red")
    assert first.status_code == 200 and first.headers["content-type"].startswith("image/"), first.headers
    # a new multipart body (its own boundary) with the same file: the same request
    replayed = upload("red")
    assert replayed.status_code == 200 and replayed.headers[REPLAYED] == "true", replayed.text
    assert replayed.content == first.content and replayed.headers["content-type"] == first.headers["content-type"]
    assert upload("blue").status_code == 422


def _backdate(server: Server, key: str, age: timedelta, **fields: str) -> None:
    """Make a key's row look `age` old (and set `fields`): what the database holds later, or from another node."""
    # Django's SQLite backend stores aware datetimes as naive UTC text
    moment = (datetime.now(UTC) - age).replace(tzinfo=None).isoformat(sep=" ")
    sets = ", ".join(["created_at = ?", *(f"{name} = ?" for name in fields)])
    server.db(f"UPDATE pxtserve_idempotencykey SET {sets} WHERE key = ?", moment, *fields.values(), key)


def test_a_key_older_than_the_ttl_is_unused(server):
    key, name = new_key(), new_name()
    assert server.post("/events", {"name": name, "delay": 0}, key).status_code == 200
    _backdate(server, key, timedelta(minutes=50))  # within the hour of this server's IDEMPOTENCY_TTL
    assert server.post("/events", {"name": name, "delay": 0}, key).headers[REPLAYED] == "true"
    _backdate(server, key, timedelta(hours=2))  # beyond it (within the default of a day)
    r = server.post("/events", {"name": name, "delay": 0}, key)
    assert r.status_code == 200 and REPLAYED not in r.headers, r.text
    assert len(server.events(name)) == 2


def test_a_claim_of_another_node_is_abandoned_after_the_request_timeout(server):
    key, name = new_key(), new_name()
    assert server.post("/events", {"name": name, "delay": 0}, key).status_code == 200
    # running on another host for a minute: still running there, for all this node can tell
    _backdate(server, key, timedelta(minutes=1), status="running", owner="elsewhere:1")
    assert server.post("/events", {"name": name, "delay": 0}, key).status_code == 409
    # longer than REQUEST_TIMEOUT (300 s) and its margin: that request was answered or its process died
    _backdate(server, key, timedelta(minutes=7), status="running", owner="elsewhere:1")
    r = server.post("/events", {"name": name, "delay": 0}, key)
    assert r.status_code == 200 and REPLAYED not in r.headers, r.text
    assert len(server.events(name)) == 2


def test_two_processes_racing_one_key_write_once(server):
    key, name = new_key(), new_name()
    body = {"name": name, "delay": 1.5}
    start = threading.Barrier(8)
    answers: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(timeout=60) as client:  # a connection each: uvicorn's two workers share them out
            start.wait()
            answers.append(client.post(f"{server.base}/events", json=body, headers={"Idempotency-Key": key}))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ran = [r for r in answers if r.status_code == 200 and REPLAYED not in r.headers]
    assert len(answers) == 8 and len(ran) == 1, [(r.status_code, r.text) for r in answers]
    assert {r.status_code for r in answers} <= {200, 409}
    assert len(server.events(name)) == 1


def test_a_claim_whose_process_died_is_taken_over(server):
    """Last: it SIGKILLs the web worker running a request (uvicorn starts another)."""
    key, name = new_key(), new_name()
    body = {"name": name, "delay": 5}
    lost = threading.Thread(target=lambda: _ignore_errors(lambda: server.post("/events", body, key)))
    lost.start()
    deadline = time.monotonic() + 30
    while not (rows := server.db("SELECT owner FROM pxtserve_idempotencykey WHERE key = ?", key)):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    pid = int(rows[0][0].rpartition(":")[2])
    worker = psutil.Process(pid)
    assert worker.ppid() != 1 and pid != server.process.pid  # a uvicorn worker of this server
    worker.send_signal(signal.SIGKILL)
    worker.wait(30)  # reaped by uvicorn's supervisor: the pid is gone
    lost.join(60)
    r = server.post("/events", body, key)
    assert r.status_code == 200 and REPLAYED not in r.headers, r.text
    assert len(server.events(name)) == 1


def _ignore_errors(call: Any) -> None:
    try:
        call()
    except httpx.HTTPError:
        pass


@pytest.mark.django_db(transaction=True)
def test_the_admin_lists_the_keys_read_only(serve):
    """In process: the admin's list and a key's page, which no one may change."""
    from django.contrib.auth.models import User
    from django.test import Client, override_settings

    from pxtserve.models import IdempotencyKey

    client = serve(
        '[[service]]\nname = "idem-admin"\nmodules = ["tests.pxt_app.idempotency_schema"]\n'
        '[[service.routes]]\ntype = "insert"\ntable = "pxtserve_test.idem_events"\npath = "/events"\n'
    )
    key = new_key()
    r = client.post(
        "/events", {"name": new_name(), "delay": 0}, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert r.status_code == 200, r.content
    row = IdempotencyKey.objects.get(key=key)
    assert (row.route, row.status, row.response_status) == ("idem-admin: POST /events", "done", 200)
    admin = Client()
    admin.force_login(User.objects.create_superuser("keys-admin", password="pw"))
    with override_settings(ROOT_URLCONF="project.urls"):
        assert key in admin.get("/admin/pxtserve/idempotencykey/").content.decode()
        assert admin.get(f"/admin/pxtserve/idempotencykey/{row.pk}/change/").status_code == 200
        assert admin.post(f"/admin/pxtserve/idempotencykey/{row.pk}/change/", {"key": "x"}).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_start_up_prunes_expired_keys_and_long_abandoned_claims():
    from django.utils import timezone

    from pxtserve.jobs import recovery
    from pxtserve.models import IdempotencyKey

    now = timezone.now()
    ages = {"expired": ("done", 25), "kept": ("done", 23), "abandoned": ("running", 25), "running": ("running", 1)}
    for key, (status, hours) in ages.items():
        IdempotencyKey.objects.create(
            route="POST /x", key=key, fingerprint="f", status=status, created_at=now - timedelta(hours=hours)
        )
    assert recovery.start_up()["idempotency_keys"] == 2
    assert set(IdempotencyKey.objects.values_list("key", flat=True)) == {"kept", "running"}
