"""Prometheus metrics over real `manage.py serve` processes: GET <prefix>/metrics, its auth, the request, write,
pool, export and job metrics (job durations from the job cluster's processes), `--workers 2` counted in one
scrape, and the off setting. Three servers, started together once for the module; the view a site of its own
mounts is tried in-process.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import REPO, free_port, serve_env, stop_process, wait_until_up

START_TIMEOUT_S = 180
SERVICE_KEY = "svc-key"
SCRAPE_KEY = "scrape-key"


def service(name: str, auth: str, export_db: Path) -> str:
    return f"""
[[service]]
name = "{name}"
prefix = "/api"
auth = "{auth}"
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

[[service.routes]]
type = "query"
path = "/lookup"
query = "tests.pxt_app.queries.item_by_id"
method = "get"

[[service.routes]]
type = "query"
path = "/slow"
query = "tests.pxt_app.slow_queries.slow_name"
method = "get"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/exported"
inputs = ["id", "name"]
outputs = ["id", "name"]
[service.routes.export_sql]
db_connect = "sqlite:///{export_db}"
table = "exported"
"""


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    tmp: Path
    headers: dict[str, str]  # the service's key, if it has auth
    scrape_headers: dict[str, str]

    def output(self) -> str:
        return (self.tmp / "serve.log").read_text(errors="replace")

    def metrics_dir(self) -> Path:
        return self.tmp / "prometheus"

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        r = httpx.get(f"{self.base}/metrics", headers=self.scrape_headers, timeout=30)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain"), r.headers
        return parse(r.text)


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def _ended_pid() -> int:
    """The pid of a process that has ended."""
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
    )
    return int(ended.stdout)


def _start(tmp: Path, *args: str, auth: str = "none", abandon: bool = False, **env: str) -> Server:
    export_db = tmp / "export.db"
    with sqlite3.connect(export_db) as db:
        db.execute("CREATE TABLE exported (id INTEGER PRIMARY KEY, name TEXT)")
    (tmp / "service.toml").write_text(service("metrics", auth, export_db))
    (tmp / "tmp").mkdir()
    if abandon:  # what a serve killed with SIGKILL leaves behind: the next serve removes it
        (tmp / "tmp" / f"pxtserve-metrics-{_ended_pid()}-abcd1234").mkdir()
    port = free_port()
    # Pixeltable's embedded PostgreSQL guards its handle list with a lock file in the runtime directory, else in
    # TMPDIR: a TMPDIR per server would give each its own lock, and servers starting together would race on
    # the list (a half-written file fails the next start). One runtime directory for every server keeps one lock.
    runtime = tmp.parent / "pg-runtime"
    (runtime / "python_PostgresServer").mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)  # platformdirs takes XDG_RUNTIME_DIR only when it is private
    environment = serve_env(tmp, TMPDIR=str(tmp / "tmp"), XDG_RUNTIME_DIR=str(runtime), PXTSERVE_JOB_WORKERS="1", **env)
    for name in ("PROMETHEUS_MULTIPROC_DIR", "PXTSERVE_METRICS", "PXTSERVE_METRICS_AUTH"):
        if name not in env:
            environment.pop(name, None)
    command = [sys.executable, "manage.py", "serve", "metrics", "--config", str(tmp / "service.toml")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", *args]
    with open(tmp / "serve.log", "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT)
    headers = {"Authorization": f"Bearer {SERVICE_KEY}"} if auth == "api_key" else {}
    scrape_headers = {"Authorization": f"Bearer {SCRAPE_KEY}"} if "PXTSERVE_METRICS_AUTH" in env else headers
    return Server(f"http://127.0.0.1:{port}/api", process, tmp, headers, scrape_headers)


def _stop(server: Server) -> None:
    stop_process(server.process)


@pytest.fixture(scope="module")
def servers(pxt_tables, tmp_path_factory) -> Iterator[dict[str, Server]]:
    multi_tmp = tmp_path_factory.mktemp("metrics-multi")
    # a directory the deployment chose, holding an earlier run's (here: unreadable) file: serve empties it
    (multi_tmp / "prometheus").mkdir()
    (multi_tmp / "prometheus" / "counter_1.db").write_bytes(b"an earlier run's file")
    # started together: their start-ups overlap
    started = {
        "main": _start(
            tmp_path_factory.mktemp("metrics-main"), auth="api_key", abandon=True, PXTSERVE_API_KEYS=SERVICE_KEY
        ),
        "multi": _start(
            multi_tmp,
            "--workers",
            "2",
            "--no-workers",
            PROMETHEUS_MULTIPROC_DIR=str(multi_tmp / "prometheus"),
            PXTSERVE_METRICS_AUTH=f"{SCRAPE_KEY},another-key",
        ),
        "off": _start(tmp_path_factory.mktemp("metrics-off"), "--no-workers", PXTSERVE_METRICS="0"),
    }
    try:
        for name, server in started.items():
            processes = 2 if name == "multi" else 1
            wait_until_up(f"{server.base}/docs", server.process, START_TIMEOUT_S, server.output, processes)
        yield started
    finally:
        for server in started.values():
            _stop(server)


@pytest.fixture(scope="module")
def main(servers) -> Server:
    return servers["main"]


def _insert(server: Server, key: int, path: str = "/items", name: str = "metrics") -> httpx.Response:
    return httpx.post(f"{server.base}{path}", json={"id": key, "name": name}, headers=server.headers, timeout=60)


# --- requests ---------------------------------------------------------------------------------------------------


def test_requests_are_counted_by_declared_route_method_and_status(main, new_id):
    before = main.scrape()
    key = new_id()
    assert _insert(main, key).status_code == 200
    duplicate = _insert(main, key)
    assert duplicate.status_code >= 400
    assert httpx.get(f"{main.base}/jobs/a1b2c3d4e5", headers=main.headers).status_code == 404  # a path parameter
    assert httpx.get(f"{main.base}/no/such/path/42", headers=main.headers).status_code == 404
    after = main.scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    items = {"route": "/api/items", "method": "POST"}
    assert delta("pxtserve_requests_total", **items, status="200") == 1
    assert delta("pxtserve_requests_total", **items, status=str(duplicate.status_code)) == 1
    assert delta("pxtserve_requests_total", route="/api/jobs/{job_id}", method="GET", status="404") == 1
    assert delta("pxtserve_requests_total", route="unmatched", method="GET", status="404") == 1
    # the histogram: both inserts observed, each in a bucket
    assert delta("pxtserve_request_duration_seconds_count", **items) == 2
    assert delta("pxtserve_request_duration_seconds_bucket", **items, le="+Inf") == 2
    assert 0 < delta("pxtserve_request_duration_seconds_sum", **items) < 60
    assert value(after, "pxtserve_request_duration_seconds_bucket", **items, le="0.001") <= value(
        after, "pxtserve_request_duration_seconds_bucket", **items, le="10.0"
    )
    # raw URLs never become labels
    assert not any("a1b2c3d4e5" in v or "/no/such" in v for _, labels in after for _, v in labels)


def test_in_flight_and_pool_in_use_while_a_query_runs(main, new_id):
    key = new_id()
    assert _insert(main, key).status_code == 200
    slow = threading.Thread(
        target=httpx.get,
        args=(f"{main.base}/slow",),
        kwargs={"params": {"id": key, "seconds": 4}, "headers": main.headers, "timeout": 60},
    )
    slow.start()
    try:
        deadline = time.monotonic() + 20
        # in flight from the middleware on; its query holds a pool thread a moment later, for its 4 s
        while not (
            value(samples := main.scrape(), "pxtserve_requests_in_flight", route="/api/slow") == 1
            and value(samples, "pxtserve_pixeltable_pool_in_use") >= 1
        ):
            assert time.monotonic() < deadline, f"the slow request never showed in flight on a pool thread: {samples}"
            time.sleep(0.2)
        assert value(samples, "pxtserve_pixeltable_pool_size") >= 1
    finally:
        slow.join()
    idle = main.scrape()
    assert value(idle, "pxtserve_requests_in_flight", route="/api/slow") == 0
    assert value(idle, "pxtserve_pixeltable_pool_in_use") == 0
    assert value(idle, "pxtserve_requests_total", route="/api/slow", method="GET", status="200") == 1


def test_concurrent_inserts_are_counted_in_write_batches(main, new_id):
    table = {"table": "pxtserve_test/items", "kind": "insert"}  # the table as Pixeltable names it
    before = main.scrape()
    sent = 0
    with ThreadPoolExecutor(16) as pool:
        # until one Pixeltable call carried several requests (a burst of 16 nearly always does at once)
        for _ in range(5):
            keys = [new_id() for _ in range(16)]
            assert [r.status_code for r in pool.map(lambda k: _insert(main, k), keys)] == [200] * 16
            sent += 16
            after = main.scrape()
            calls = value(after, "pxtserve_write_batch_size_count", **table) - value(
                before, "pxtserve_write_batch_size_count", **table
            )
            if calls < sent:
                break
    assert (
        value(after, "pxtserve_write_batch_size_sum", **table) - value(before, "pxtserve_write_batch_size_sum", **table)
        == sent
    )  # every row in exactly one call
    assert 1 <= calls < sent
    assert ("pxtserve_write_queue_depth", frozenset({("table", "pxtserve_test/items")})) in after
    assert value(after, "pxtserve_write_queue_depth", table="pxtserve_test/items") == 0


def test_export_failures_are_counted_by_target_table(main, new_id):
    key = new_id()
    with sqlite3.connect(main.tmp / "export.db") as db:
        db.execute("INSERT INTO exported VALUES (?, 'already there')", (key,))
    before = main.scrape()
    r = _insert(main, key, path="/exported")
    assert r.status_code == 500, r.text
    after = main.scrape()
    assert (
        value(after, "pxtserve_export_failures_total", target="exported")
        - value(before, "pxtserve_export_failures_total", target="exported")
        == 1
    )
    text = httpx.get(f"{main.base}/metrics", headers=main.headers).text
    assert "export.db" not in text and "sqlite:" not in text


# --- jobs ---------------------------------------------------------------------------------------------------------


def test_job_counts_and_durations_come_from_the_job_cluster(main, new_id):
    from pxtserve.models import Job

    route = "metrics: POST /items/bg"  # the job's route (Job.route)
    before = main.scrape()
    key = new_id()
    jobs = []
    for body in ({"id": key, "name": "job"}, {"id": key, "name": "duplicate"}):
        r = httpx.post(f"{main.base}/items/bg", json=body, headers=main.headers, timeout=30)
        assert r.status_code == 202, r.text
        jobs.append(r.json()["job_url"])
        deadline = time.monotonic() + 120
        while httpx.get(jobs[-1], headers=main.headers).json()["status"] in ("pending", "running"):
            assert time.monotonic() < deadline, main.output()
            time.sleep(0.3)
    after = main.scrape()
    # observed in the worker process, written to the shared directory, answered by the web process
    assert (
        value(after, "pxtserve_job_duration_seconds_count", route=route)
        - value(before, "pxtserve_job_duration_seconds_count", route=route)
        == 2
    )
    statuses = {dict(labels)["status"] for name, labels in after if name == "pxtserve_jobs"}
    assert statuses == set(Job.Status.values)
    for status in ("done", "error"):
        assert value(after, "pxtserve_jobs", status=status) - value(before, "pxtserve_jobs", status=status) == 1


# --- /metrics itself --------------------------------------------------------------------------------------------


def test_metrics_follow_the_service_auth(main):
    url = f"{main.base}/metrics"
    missing = httpx.get(url)
    route = httpx.get(f"{main.base}/lookup", params={"id": 1})  # the service's own answer without a key
    assert missing.status_code == route.status_code == 401 and missing.json() == route.json(), missing.text
    assert httpx.get(url, headers={"X-API-Key": "wrong"}).status_code == 403
    assert httpx.get(url, headers={"X-API-Key": SERVICE_KEY}).status_code == 200
    open_metrics = httpx.get(url, headers={**main.headers, "Accept": "application/openmetrics-text; version=1.0.0"})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text"), open_metrics.headers
    assert open_metrics.text.endswith("# EOF\n")
    assert httpx.post(url, headers=main.headers).status_code == 405


def test_workers_2_one_scrape_counts_the_requests_of_both_workers(servers):
    multi = servers["multi"]
    directory = multi.metrics_dir()
    assert not (directory / "counter_1.db").exists(), "the earlier run's file was left"
    route = "/api/lookup"
    sent = 0
    deadline = time.monotonic() + 120
    with ThreadPoolExecutor(8) as pool:
        while len(per_process := _route_count_by_process(directory, route)) < 2:
            assert time.monotonic() < deadline, f"requests never reached both workers: {per_process}"
            # a new connection per request (uvicorn's processes share the listening socket), a public route
            statuses = list(
                pool.map(lambda _: httpx.get(f"{multi.base}/lookup", params={"id": 1}).status_code, range(8))
            )
            assert all(s in (200, 404) for s in statuses), statuses
            sent += 8
    scraped = multi.scrape()  # one process answers for both
    assert value(scraped, "pxtserve_requests_total", route=route) == sent == sum(per_process.values())


def _route_count_by_process(directory: Path, route: str) -> dict[int, float]:
    """pxtserve_requests_total of `route` in each process's file of the multiprocess directory."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        metrics = MultiProcessCollector.merge([str(path)])
        total = sum(
            s.value
            for m in metrics
            if m.name == "pxtserve_requests"
            for s in m.samples
            if s.name == "pxtserve_requests_total" and s.labels.get("route") == route
        )
        if total:
            counts[int(path.stem.rpartition("_")[2])] = total
    return counts


def test_the_gauges_of_an_ended_process_are_dropped(servers):
    multi = servers["multi"]
    # what a web worker killed while serving 5 requests leaves behind: its in-flight gauge, in its own file
    path = multi.metrics_dir() / f"gauge_livesum_{_ended_pid()}.db"
    name = "pxtserve_requests_in_flight"
    ghost = MmapedDict(str(path))
    ghost.write_value(mmap_key(name, name, ["route"], ["/ghost"], "Requests being served"), 5.0, 0.0)
    ghost.close()
    assert value(multi.scrape(), name, route="/ghost") == 0
    assert not path.exists()


def test_metrics_auth_keys_replace_the_service_auth(servers):
    multi = servers["multi"]
    url = f"{multi.base}/metrics"
    assert httpx.get(url).status_code == 401  # the service is public; its metrics are not
    assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": f"Bearer {SCRAPE_KEY}"}).status_code == 200
    assert httpx.get(url, headers={"X-API-Key": "another-key"}).status_code == 200


def test_metrics_off_is_a_json_404_and_no_directory(servers):
    off = servers["off"]
    r = httpx.get(f"{off.base}/metrics")
    assert r.status_code == 404 and r.json()["detail"]["error_code"] == "NOT_FOUND", r.text
    assert httpx.get(f"{off.base}/lookup", params={"id": 1}).status_code in (200, 404)
    assert list((off.tmp / "tmp").glob("pxtserve-metrics-*")) == []


def test_a_single_process_serve_keeps_metrics_in_a_directory_of_its_own_until_it_ends(main):
    made = list((main.tmp / "tmp").glob("pxtserve-metrics-*"))
    # its own, and not the one a killed serve left
    assert len(made) == 1 and list(made[0].glob("counter_*.db")), made
    _stop(main)  # the last test of the module that uses it
    assert main.process.returncode is not None
    assert not made[0].exists()


# --- a site of its own --------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_site_mounts_the_metrics_view_behind_its_routers_auth_and_counts_with_the_middleware(pxt_tables):
    from django.conf import settings
    from django.test import Client, override_settings
    from django.urls import path
    from ninja import NinjaAPI

    from pxtserve import PixeltableRouter
    from pxtserve.auth import api_key_auth
    from pxtserve.metrics import make_metrics_view

    router = PixeltableRouter(auth=api_key_auth(lambda: ["site-key"]))
    router.add_query_route(path="/lookup", query="tests.pxt_app.queries.item_by_id", method="get")
    api = NinjaAPI(urls_namespace="metrics-site")
    api.add_router("/pxt", router)
    urlconf: Any = types.ModuleType("metrics_site_urls")
    urlconf.urlpatterns = [path("ops/metrics", make_metrics_view(auth=router.auth)), path("api/", api.urls)]
    # the site's own (sync, under the test client) middleware chain
    middleware = [*settings.MIDDLEWARE, "pxtserve.metrics.MetricsMiddleware"]
    key = {"HTTP_X_API_KEY": "site-key"}
    with override_settings(ROOT_URLCONF=urlconf, MIDDLEWARE=middleware):
        assert Client().get("/ops/metrics").status_code == 401
        before = parse(Client().get("/ops/metrics", **key).content.decode())
        assert Client().get("/api/pxt/lookup", {"id": 1}, **key).status_code == 200
        r = Client().get("/ops/metrics", **key)
    assert r.status_code == 200
    after = parse(r.content.decode())
    labels = {"route": "/api/pxt/lookup", "method": "GET", "status": "200"}
    assert value(after, "pxtserve_requests_total", **labels) - value(before, "pxtserve_requests_total", **labels) == 1
    assert value(after, "pxtserve_requests_in_flight", route="/api/pxt/lookup") == 0
    assert ("pxtserve_jobs", frozenset({("status", "pending")})) in after
