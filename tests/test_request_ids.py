"""Request ids and logs: X-Request-ID on every response, the id on the request's log lines (the access line, a
500's traceback, a pool thread's lines, the job worker's), one logging config for every process of a serve.

Two real `manage.py serve` processes, started together once for the module: one with the default text logs
and its job workers, one with `--log-format json` and none. Their stdout and stderr go to separate files.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.processes import REPO, free_port, serve_env, wait_until_up

SERVICE = """
[[service]]
name = "reqids"
modules = ["tests.pxt_app.schema"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"
inputs = ["id", "name"]
outputs = ["id", "name_upper"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items/bg"
inputs = ["id", "name"]
outputs = ["id", "name_upper"]
background = true
"""

SETTINGS = """
from project.settings import *

ROOT_URLCONF = "reqid_urls"
"""

# the site's URLs plus a view that fails unexpectedly (Django's own 500) and a decorator route whose function
# raises in the Pixeltable pool thread (pxtserve's logged ROUTE_FUNCTION_FAILED)
URLS = """
import pixeltable as pxt
import pydantic
from django.urls import include, path
from ninja import NinjaAPI

from pxtserve import PixeltableRouter


async def boom(request):
    raise RuntimeError("an unexpected failure for the request-id test")


class Out(pydantic.BaseModel):
    id: int


router = PixeltableRouter()


@router.compute_route(pxt.get_table("pxtserve_test.items"), path="/fails", inputs=["id", "name"], outputs=["id"])
def fails(*, id: int) -> Out:
    raise ValueError("a bug in the route function")


api = NinjaAPI(urls_namespace="reqid-extra")
api.add_router("", router)

urlpatterns = [path("boom", boom), path("extra/", api.urls), path("", include("pxtserve.site.urls"))]
"""

START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 60
GENERATED = re.compile(r"[0-9a-f]{32}")


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    tmp: Path

    def stderr(self) -> str:
        return (self.tmp / "stderr.log").read_text(errors="replace")

    def stdout(self) -> str:
        return (self.tmp / "stdout.log").read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout\n{self.stdout()}\n--- stderr\n{self.stderr()}"

    def lines_with(self, text: str, timeout: float = 10) -> list[str]:
        """The stderr lines that contain `text`, waiting a little for them (another process may write them)."""
        deadline = time.monotonic() + timeout
        while not (found := [line for line in self.stderr().splitlines() if text in line]):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return found


def _start(tmp: Path, *args: str, job_workers: bool) -> Server:
    (tmp / "reqid_settings.py").write_text(SETTINGS)
    (tmp / "reqid_urls.py").write_text(URLS)
    (tmp / "reqids.toml").write_text(SERVICE)
    port = free_port()
    env = serve_env(
        tmp,
        PYTHONPATH=f"{tmp}:{REPO}",
        DJANGO_SETTINGS_MODULE="reqid_settings",
        DJANGO_DEBUG="0",
        PXTSERVE_JOB_WORKERS="1",
    )
    for name in ("PXTSERVE_LOG_LEVEL", "PXTSERVE_LOG_FORMAT", "PXTSERVE_ACCESS_LOG"):
        env.pop(name, None)
    command = [sys.executable, "manage.py", "serve", "reqids", "--config", str(tmp / "reqids.toml")]
    command += ["--host", "127.0.0.1", "--port", str(port), *args]
    if not job_workers:
        command.append("--no-workers")
    with open(tmp / "stdout.log", "w") as out, open(tmp / "stderr.log", "w") as err:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err)
    return Server(f"http://127.0.0.1:{port}", process, tmp)


@pytest.fixture(scope="module")
def servers(pxt_tables, tmp_path_factory) -> Iterator[dict[str, Server]]:
    # started together: their start-ups overlap
    started = {
        "text": _start(tmp_path_factory.mktemp("reqids-text"), job_workers=True),
        "json": _start(tmp_path_factory.mktemp("reqids-json"), "--log-format", "json", job_workers=False),
    }
    try:
        for server in started.values():
            wait_until_up(f"{server.base}/healthz", server.process, START_TIMEOUT_S, server.output)
        yield started
    finally:
        for server in started.values():
            server.process.terminate()
        for server in started.values():
            try:
                server.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


@pytest.fixture(scope="module")
def server(servers) -> Server:
    return servers["text"]


def test_a_response_has_a_generated_request_id(server):
    first, second = httpx.get(f"{server.base}/healthz"), httpx.get(f"{server.base}/healthz")
    assert first.status_code == 200
    assert GENERATED.fullmatch(first.headers["x-request-id"]), first.headers
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_the_clients_id_is_echoed(server):
    sent = "client-id:1.2_3-" + "x" * 180  # every allowed character kind, 200 characters in all
    r = httpx.get(f"{server.base}/healthz", headers={"X-Request-ID": sent})
    assert r.headers["x-request-id"] == sent


@pytest.mark.parametrize("sent", ["", "has space", "x" * 201, "semi;colon", 'quote"d', "new%0Aline"])
def test_a_bad_id_is_replaced_by_a_generated_one(server, sent):
    r = httpx.get(f"{server.base}/healthz", headers={"X-Request-ID": sent})
    assert GENERATED.fullmatch(r.headers["x-request-id"]), (sent, r.headers)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/nope", {}, 404),  # the URL resolver's, made JSON by pxtserve.api_errors
        ("GET", "/healthz", {"Host": "rebound.example"}, 400),  # answered before the chain goes further
        ("GET", "/items", {}, 405),
        ("POST", "/items", {}, 422),  # a body that does not validate
        ("GET", "/admin/login/", {}, 200),  # Django's full handler and settings.MIDDLEWARE
    ],
)
def test_error_responses_and_the_full_django_paths_carry_the_id(server, method, path, headers, status):
    r = httpx.request(method, server.base + path, headers={**headers, "X-Request-ID": f"err-{status}"}, json={})
    assert r.status_code == status, r.text
    assert r.headers["x-request-id"] == f"err-{status}"
    if status >= 400:
        assert r.headers["content-type"].startswith("application/json"), r.headers


def _raw_exchange(base: str, request: bytes) -> tuple[int, dict[str, str]]:
    """Send `request` as-is on a socket (what httpx would refuse or fix); the status and headers answered."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), headers


@pytest.mark.parametrize(
    ("request_line", "extra", "status"),
    [
        # pxtserve.limits answers a declared body over MAX_REQUEST_BODY before Django reads it (uvicorn itself
        # refuses a request line Django could not decode; tests/test_limits.py sends one over ASGI)
        (b"POST /items HTTP/1.1", b"Content-Type: application/json\r\nContent-Length: 10000000000000\r\n", 413),
    ],
)
def test_answers_made_before_django_carry_the_id_and_an_access_line(server, request_line, extra, status):
    rid = f"pre-django-{status}"
    raw = request_line + b"\r\nHost: 127.0.0.1\r\nX-Request-ID: " + rid.encode() + b"\r\n" + extra + b"\r\n"
    got, headers = _raw_exchange(server.base, raw)
    assert got == status, headers
    assert headers["x-request-id"] == rid and headers["content-type"] == "application/json", headers
    [line] = server.lines_with(f"[{rid}]")
    assert "pxtserve.access" in line and f" {status} " in line, line


def test_the_access_line_carries_the_id_in_the_text_format(server):
    httpx.get(f"{server.base}/healthz?secret=1", headers={"X-Request-ID": "access-line-1"})
    [line] = server.lines_with("[access-line-1]")
    pattern = r'\S+Z INFO pxtserve\.access \[access-line-1\] 127\.0\.0\.1 - "GET /healthz HTTP/1\.1" 200 \d+\.\d ms'
    assert re.fullmatch(pattern, line), line  # no query string
    # a path that decodes to quotes and a newline cannot fake a line: it is logged percent-encoded
    httpx.get(f"{server.base}/a%22b%0Ac", headers={"X-Request-ID": "access-line-2"})
    [line] = server.lines_with("[access-line-2]")
    assert line.endswith('"GET /a%22b%0Ac HTTP/1.1" 404 ' + line.rsplit(" ", 2)[1] + " ms"), line
    # uvicorn logs with the same format (it installed none of its own) and its access line is off
    [running] = server.lines_with("Uvicorn running on")
    assert re.match(r"\S+Z INFO uvicorn\.error \[-\] Uvicorn running on", running), running
    assert '"GET /healthz?secret=1 HTTP/1.1"' not in server.stderr()
    # logs go to stderr only: stdout keeps serve's own output
    assert "pxtserve.access" not in server.stdout() and "Serving 'reqids'" in server.stdout()


def test_json_lines_parse_and_carry_the_id(servers):
    server = servers["json"]
    r = httpx.get(f"{server.base}/nope", headers={"X-Request-ID": "json-line-1"})
    assert r.status_code == 404
    [line] = server.lines_with('"json-line-1"')
    entry = json.loads(line)
    assert entry["logger"] == "pxtserve.access" and entry["level"] == "INFO" and entry["request_id"] == "json-line-1"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/nope", 404), entry
    assert isinstance(entry["duration_ms"], float) and entry["time"].endswith("Z")
    assert '"GET /nope HTTP/1.1" 404' in entry["message"]
    # every log line is one JSON object: uvicorn's and Django's too
    records = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    assert any(r["logger"] == "uvicorn.error" and "Uvicorn running on" in r["message"] for r in records), records
    assert not [line for line in server.stderr().splitlines() if line.startswith(("INFO:", "INFO "))]


def test_a_500_is_logged_at_error_with_its_traceback(servers):
    server = servers["text"]
    r = httpx.get(f"{server.base}/boom", headers={"X-Request-ID": "boom-1"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "boom-1"
    [line] = server.lines_with("ERROR django.request [boom-1]")
    assert line.endswith("Internal Server Error: /boom"), line
    after = server.stderr().split(line, 1)[1]
    assert after.lstrip("\n").startswith("Traceback (most recent call last):"), after[:500]
    assert "RuntimeError: an unexpected failure for the request-id test" in after
    # with DEBUG off nothing of it reaches the client
    assert "RuntimeError" not in r.text

    server = servers["json"]
    r = httpx.get(f"{server.base}/boom", headers={"X-Request-ID": "boom-json-1"})
    assert r.status_code == 500
    [entry] = [json.loads(line) for line in server.lines_with('"boom-json-1"') if '"django.request"' in line]
    assert entry["level"] == "ERROR" and entry["message"] == "Internal Server Error: /boom"
    assert entry["exc_info"].startswith("Traceback") and "RuntimeError: an unexpected" in entry["exc_info"]


def test_a_log_line_from_the_pixeltable_pool_carries_the_id(server, new_id):
    r = httpx.post(f"{server.base}/extra/fails", json={"id": new_id(), "name": "x"}, headers={"X-Request-ID": "pool-1"})
    assert r.status_code == 500 and r.json()["detail"]["error_code"] == "ROUTE_FUNCTION_FAILED", r.text
    [line] = [line for line in server.lines_with("[pool-1]") if "pxtserve.routes" in line]
    assert re.match(r"\S+Z ERROR pxtserve\.routes \[pool-1\] route .*: fails raised", line), line
    assert "ValueError: a bug in the route function" in server.stderr().split(line, 1)[1]


def test_a_job_stores_the_request_id_and_the_worker_logs_with_it(server, new_id):
    key = new_id()
    r = httpx.post(f"{server.base}/items/bg", json={"id": key, "name": "job"}, headers={"X-Request-ID": "job-req-1"})
    assert r.status_code == 202 and r.headers["x-request-id"] == "job-req-1", r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (status := httpx.get(r.json()["job_url"]).json())["status"] in ("pending", "running"):
        assert time.monotonic() < deadline, f"job still {status}\n{server.output()}"
        time.sleep(0.3)
    assert status["status"] == "done", status
    with sqlite3.connect(server.tmp / "django.sqlite3") as db:
        [(stored,)] = db.execute("SELECT request_id FROM pxtserve_job WHERE id = ?", (job_id,)).fetchall()
    assert stored == "job-req-1"
    # the job ran in a worker (a thread of the web process: the default runner), whose lines carry the request's id
    [started] = server.lines_with(f"INFO pxtserve.jobs [job-req-1] job {job_id} (reqids: POST /items/bg) started on ")
    assert started.endswith(f":{server.process.pid}"), started
    [finished] = server.lines_with(f"job {job_id} (reqids: POST /items/bg) finished: done")
    assert "INFO pxtserve.jobs [job-req-1]" in finished, finished


# in-process: the sync middleware path (Django's test client runs settings.MIDDLEWARE sync), and the pools


def test_the_middleware_works_in_a_sync_chain():
    from django.test import Client

    r = Client().get("/healthz", headers={"X-Request-ID": "sync-1"})
    assert r.status_code == 200 and r["X-Request-ID"] == "sync-1"
    assert GENERATED.fullmatch(Client().get("/healthz", headers={"X-Request-ID": "bad id"})["X-Request-ID"])


def test_pool_calls_run_in_the_callers_context():
    from pxtserve import request_id
    from pxtserve.executor import run_in_pool, run_in_pool_with_timeout

    async def go() -> list[str | None]:
        with request_id.bound("in-pool-1"):
            return [
                await run_in_pool(request_id.current),
                await run_in_pool_with_timeout(None, request_id.current),
                await run_in_pool_with_timeout(30, request_id.current),
            ]

    assert asyncio.run(go()) == ["in-pool-1"] * 3
    assert request_id.current() is None


def test_the_standalone_site_gives_uvicorn_no_logging_config_of_its_own():
    from django.conf import settings

    from pxtserve import logs

    assert logs.is_pxtserve_config(settings.LOGGING)
    assert logs.uvicorn_options() == {"log_config": None, "log_level": None}
    with pytest.raises(ValueError, match="log level: 'verbose' is not one of debug, info, warning, error"):
        logs.logging_config_from_env({"PXTSERVE_LOG_LEVEL": "verbose"})
