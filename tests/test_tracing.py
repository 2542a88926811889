"""OpenTelemetry traces (pxtserve.tracing) over a real `serve --otel --workers 2` with its job worker cluster.

Every process of the server appends its finished spans to one file as JSON lines (PXTSERVE_OTEL_TEST_FILE) and
exports them over OTLP/HTTP, as the OTEL_* variables say, to a receiver this module runs; the batch delay is so
long that only the flush when a process stops delivers them (the last test stops the server). Also here: the
SDK's absence (simulated in a real process by making every `import opentelemetry` fail), which `--otel` reports
and which tracing off never notices.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from django.test import override_settings

from tests.processes import REPO, free_port, serve_env, stop_process, wait_until_up

START_TIMEOUT_S = 180
SPAN_TIMEOUT_S = 60

SERVICE = """
[[service]]
name = "traced"
prefix = "/api"
modules = ["tests.pxt_app.schema"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"
inputs = ["id", "name"]
outputs = ["id", "name_upper"]

[[service.routes]]
type = "query"
path = "/items/lookup"
query = "tests.pxt_app.queries.item_by_id"
method = "get"
one_row = true

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items/bg"
inputs = ["id", "name"]
outputs = ["id", "name_upper"]
background = true
"""
# the server's service has this route too (the dry runs do without its target)
EXPORT_ROUTE = """
[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items/exported"
inputs = ["id", "name"]
outputs = ["id", "name", "name_upper"]
[service.routes.export_sql]
db_connect = "sqlite:///{target}"
table = "traced_export"
"""

# a process in which OpenTelemetry is not installed, as far as Python can tell: every import of it fails
NO_OTEL = 'import sys\nsys.modules["opentelemetry"] = None\n'
RUN_MANAGE_PY = (
    NO_OTEL
    + 'import runpy\nsys.argv = ["manage.py", *sys.argv[1:]]\nrunpy.run_path("manage.py", run_name="__main__")\n'
)
# with tracing off: the API handler (its middleware chain loaded) and a service built, opentelemetry never imported
TRACING_OFF = (
    NO_OTEL
    + """
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
from pxtserve.asgi import build_application
build_application()
from pxtserve import tracing
assert not tracing.enabled and tracing.context_carrier() == {}
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", *sys.argv[1:]])
"""
)


class OtlpReceiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: keeps every span it is sent, with its resource's service.name."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _OtlpHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _OtlpHandler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.server.spans.append(
                        {"name": span.name, "span_id": span.span_id.hex(), "service_name": resource["service.name"]}
                    )
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    tmp: Path
    spans_file: Path
    receiver: OtlpReceiver
    ids: Iterator[int] = field(default_factory=lambda: iter(range(700_000, 800_000)))

    def output(self) -> str:
        return (self.tmp / "serve.log").read_text(errors="replace")

    def spans(self) -> list[dict[str, Any]]:
        if not self.spans_file.exists():
            return []
        return [json.loads(line) for line in self.spans_file.read_text().splitlines() if line]

    def wait_for(self, found: Callable[[list[dict[str, Any]]], Any]) -> Any:
        """found(spans) once it is truthy, waiting for other processes to write theirs."""
        deadline = time.monotonic() + SPAN_TIMEOUT_S
        while not (result := found(self.spans())):
            assert time.monotonic() < deadline, f"spans not found\n{self.spans()}\n{self.output()}"
            time.sleep(0.2)
        return result

    def request(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, dict[str, Any]]:
        """Send a request with a fresh X-Request-ID; its response and its server span."""
        request_id = f"trace-{uuid.uuid4().hex}"
        headers = {"X-Request-ID": request_id, **kwargs.pop("headers", {})}
        response = httpx.request(method, self.base + path, headers=headers, timeout=60, **kwargs)
        span = self.wait_for(lambda spans: one(spans, kind="SERVER", request_id=request_id))
        return response, span

    def stop(self) -> None:
        stop_process(self.process, timeout=90)


def one(spans: list[dict[str, Any]], *, request_id: str | None = None, **match: Any) -> dict[str, Any] | None:
    """The single span with these fields (and this pxtserve.request_id), or None."""
    found = [
        s
        for s in spans
        if all(s[k] == v for k, v in match.items())
        and (request_id is None or s["attributes"].get("pxtserve.request_id") == request_id)
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def child(spans: list[dict[str, Any]], parent: dict[str, Any], name: str) -> dict[str, Any]:
    found = one(spans, name=name, parent_id=parent["span_id"])
    assert found is not None, (name, parent, spans)
    assert found["trace_id"] == parent["trace_id"]
    return found


@pytest.fixture(scope="module")
def server(pxt_tables, tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("tracing")
    target = tmp / "export.db"
    engine = sa.create_engine(f"sqlite:///{target}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE traced_export (id INTEGER, name TEXT, name_upper TEXT)"))
    engine.dispose()
    (tmp / "traced.toml").write_text(SERVICE + EXPORT_ROUTE.format(target=target))
    receiver = OtlpReceiver()
    port = free_port()
    env = serve_env(
        tmp,
        PXTSERVE_JOB_WORKERS="1",
        PXTSERVE_OTEL_TEST_FILE=str(tmp / "spans.jsonl"),
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        # ten minutes: spans reach the receiver only through the flush when a process stops
        OTEL_BSP_SCHEDULE_DELAY="600000",
    )
    for name in ("PXTSERVE_OTEL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_EXPORTER"):
        env.pop(name, None)
    command = [sys.executable, "manage.py", "serve", "traced", "--config", str(tmp / "traced.toml"), "--otel"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    with open(tmp / "serve.log", "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    started = Server(f"http://127.0.0.1:{port}", process, tmp, tmp / "spans.jsonl", receiver)
    try:
        wait_until_up(f"{started.base}/healthz", process, START_TIMEOUT_S, started.output, processes=2)
        yield started
    finally:
        started.stop()
        receiver.shutdown()


def test_an_insert_is_a_request_span_over_its_pixeltable_call_and_its_wait_for_the_writer(server):
    key = next(server.ids)
    response, span = server.request("POST", "/api/items", json={"id": key, "name": "ada"})
    assert response.status_code == 200, response.text
    assert span["name"] == "POST /api/items"
    assert span["parent_id"] is None
    assert span["status"] == "UNSET"
    assert span["service_name"] == "traced"  # the service's name: OTEL_SERVICE_NAME is not set
    assert span["attributes"] == {
        "http.request.method": "POST",
        "http.route": "/api/items",
        "http.response.status_code": 200,
        "url.path": "/api/items",
        "url.scheme": "http",
        "pxtserve.request_id": response.headers["x-request-id"],
    }
    spans = server.spans()
    call = child(spans, span, "pixeltable")
    assert call["attributes"]["code.function.name"].endswith(".execute"), call
    wait = child(spans, call, "pxtserve.write.wait")
    assert wait["attributes"] == {
        "pxtserve.write.table": "pxtserve_test/items",  # the table's path, as Pixeltable writes it
        "pxtserve.write.kind": "insert",
        "pxtserve.write.batch_size": 1,
    }
    assert span["pid"] == call["pid"] == wait["pid"]


def test_an_incoming_traceparent_is_continued(server):
    key = next(server.ids)
    assert httpx.post(f"{server.base}/api/items", json={"id": key, "name": "bob"}, timeout=60).status_code == 200
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    response, span = server.request(
        "GET", "/api/items/lookup", params={"id": key}, headers={"traceparent": f"00-{trace_id}-{parent_id}-01"}
    )
    assert response.json() == {"id": key, "name": "bob", "name_upper": "BOB"}
    assert (span["name"], span["trace_id"], span["parent_id"]) == ("GET /api/items/lookup", trace_id, parent_id)
    child(server.spans(), span, "pixeltable")


def test_a_span_has_the_declared_route_never_the_raw_url_and_the_status(server):
    response, span = server.request("GET", "/api/items/lookup", params={"id": -1})
    assert response.status_code == 404
    assert span["name"] == "GET /api/items/lookup"
    assert span["attributes"]["http.response.status_code"] == 404
    # a 4xx is the request's fault, not an error of the server's: neither span says error
    assert span["status"] == child(server.spans(), span, "pixeltable")["status"] == "UNSET"
    response, span = server.request("GET", "/api/no/such/route")
    assert response.status_code == 404
    assert span["name"] == "GET" and "http.route" not in span["attributes"], span


def test_an_export_sql_row_is_a_span_under_the_pixeltable_call(server):
    key = next(server.ids)
    response, span = server.request("POST", "/api/items/exported", json={"id": key, "name": "cy"})
    assert response.status_code == 200, response.text
    spans = server.spans()
    export = child(spans, child(spans, span, "pixeltable"), "pxtserve.export")
    assert export["kind"] == "CLIENT"
    assert export["attributes"] == {
        "db.system.name": "sqlite",
        "db.collection.name": "traced_export",
        "db.operation.name": "insert",
    }


def test_a_failing_export_is_an_error_on_its_span_and_up_to_the_request(server):
    engine = sa.create_engine(f"sqlite:///{server.tmp / 'export.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE traced_export"))  # the target went away
    try:
        response, span = server.request("POST", "/api/items/exported", json={"id": next(server.ids), "name": "x"})
    finally:  # and comes back: a process that (re)builds the service checks it is there
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE traced_export (id INTEGER, name TEXT, name_upper TEXT)"))
        engine.dispose()
    assert response.status_code == 500, response.text
    spans = server.spans()
    call = child(spans, span, "pixeltable")
    export = child(spans, call, "pxtserve.export")
    assert export["status"] == call["status"] == span["status"] == "ERROR", (export, call, span)
    assert export["status_description"].startswith("ExportWriteError: export_sql to 'traced_export' failed")
    assert span["status_description"] == "HTTP 500"


def test_the_job_worker_continues_the_submitting_requests_trace(server):
    key = next(server.ids)
    response, span = server.request("POST", "/api/items/bg", json={"id": key, "name": "dee"})
    assert response.status_code == 202, response.text
    request_id = response.headers["x-request-id"]
    job = server.wait_for(lambda spans: one(spans, kind="CONSUMER", request_id=request_id))
    assert job["parent_id"] == span["span_id"] and job["trace_id"] == span["trace_id"], (job, span)
    assert job["pid"] != span["pid"]  # a django-q2 worker, not the web process
    assert job["name"].startswith("job ") and job["name"].endswith("POST /items/bg"), job
    assert job["attributes"]["pxtserve.job.id"] == response.json()["id"]
    assert job["attributes"]["pxtserve.job.status"] == "done"
    assert job["service_name"] == "traced"
    # the worker's write waits for its table's writer too, under the job
    child(server.spans(), job, "pxtserve.write.wait")


def test_stopping_the_server_flushes_every_processs_spans_over_otlp(server):
    """Runs last: it stops the server. The OTLP exporter (the default) got each process's spans at its exit."""
    key = next(server.ids)
    _, span = server.request("POST", "/api/items/bg", json={"id": key, "name": "eve"})
    job = server.wait_for(
        lambda spans: one(spans, kind="CONSUMER", request_id=span["attributes"]["pxtserve.request_id"])
    )
    # the job has finished (its span ended) before the stop
    assert httpx.get(f"{server.base}/api/jobs/{job['attributes']['pxtserve.job.id']}").json()["status"] == "done"
    assert not [s for s in server.receiver.spans if s["span_id"] == span["span_id"]], "exported before the stop"
    server.stop()
    received = {s["span_id"]: s for s in server.receiver.spans}
    assert received.get(span["span_id"], {}).get("name") == "POST /api/items/bg", server.output()
    assert received.get(job["span_id"], {}).get("name") == job["name"], server.output()
    assert {s["service_name"] for s in received.values()} == {"traced"}


def test_the_setting_and_the_environment_variable_turn_tracing_on(monkeypatch):
    from pxtserve import tracing

    monkeypatch.delenv("PXTSERVE_OTEL", raising=False)
    assert not tracing.wanted()
    with override_settings(PXTSERVE={"OTEL": True}):
        assert tracing.wanted()
    monkeypatch.setenv("PXTSERVE_OTEL", "1")
    assert tracing.wanted()


def _serve_dry_run(tmp_path: Path, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "traced.toml"
    config.write_text(SERVICE)
    environment = serve_env(tmp_path, **env)
    for name in ("PXTSERVE_OTEL", "OTEL_TRACES_EXPORTER"):
        if name not in env:
            environment.pop(name, None)
    command = [sys.executable, "-c", script, "serve", "traced", "--config", str(config), "--dry-run", *args]
    return subprocess.run(command, check=False, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("script", "args", "env", "message"),
    [
        (RUN_MANAGE_PY, ["--otel"], {}, "pip install pxtserve[otel]"),
        (RUN_MANAGE_PY, [], {"PXTSERVE_OTEL": "1"}, "pip install pxtserve[otel]"),
        (RUN_MANAGE_PY.replace(NO_OTEL, "import sys\n"), ["--otel"], {"OTEL_TRACES_EXPORTER": "zipkin"}, "'zipkin'"),
    ],
    ids=["flag-without-sdk", "env-without-sdk", "unknown-exporter"],
)
def test_tracing_that_cannot_start_stops_serve_with_a_clear_message(pxt_tables, tmp_path, script, args, env, message):
    result = _serve_dry_run(tmp_path, script, *args, **env)
    assert result.returncode != 0, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_with_tracing_off_nothing_imports_opentelemetry(pxt_tables, tmp_path):
    result = _serve_dry_run(tmp_path, TRACING_OFF)
    assert result.returncode == 0, result.stderr
    assert "GET   /items/lookup" in result.stdout, result.stdout
