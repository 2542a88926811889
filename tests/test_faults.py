"""Faults with nothing lost: a SIGTERM drains the request in flight, a SIGKILL under load loses no
acknowledged insert and leaves no half-written row, and an export target that goes away and comes
back fails only its own route, only while it is away."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy as sa

from tests.processes import free_port, serve_env, wait_until_up

from .conftest import service_from_toml, serving

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120

SERVICE = """
[[service]]
name = "faults"
modules = ["tests.pxt_app.soak_schema"]

[[service.routes]]
type = "insert"
table = "pxtserve_soak.rows"
path = "/rows"

[[service.routes]]
type = "query"
path = "/rows/lookup"
query = "tests.pxt_app.soak_schema.soak_by_id"
one_row = true
method = "get"

[[service.routes]]
type = "query"
path = "/slow"
query = "tests.pxt_app.slow_queries.slow_name"
one_row = true
"""


@pytest.fixture(scope="module")
def soak_rows(pxt_tables: Any) -> Any:
    from tests.pxt_app import soak_schema

    return soak_schema


class Server:
    """`manage.py serve` in its own process group, its output in a file (a full pipe would block it)."""

    def __init__(self, tmp_path: Path, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = tmp_path / "faults.toml"
        config.write_text(SERVICE)
        self.log_path = tmp_path / f"serve-{self.port}-{time.monotonic_ns()}.log"
        env = serve_env(tmp_path, PIXELTABLE_VERBOSITY="0")
        command = [sys.executable, "manage.py", "serve", "faults", "--config", str(config)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), *args]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, processes: int = 1) -> None:
        wait_until_up(f"{self.base}/healthz", self.process, START_TIMEOUT_S, self.log, processes)

    def kill(self) -> None:
        """SIGKILL every process group the server's processes lead or share (none of them may survive)."""
        groups = {self.process.pid}
        try:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                try:
                    if child.name().startswith("postgres"):
                        continue  # Pixeltable's embedded PostgreSQL is shared with this test process
                    groups.add(os.getpgid(child.pid))
                except (psutil.NoSuchProcess, ProcessLookupError):
                    pass
        except psutil.NoSuchProcess:
            pass
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)


def stored_rows(soak_rows: Any, keys: list[int]) -> dict[int, dict[str, Any]]:
    t = soak_rows.rows
    found = t.where(t.id.isin(keys)).select(t.id, t.client, t.n, t.name, t.name_upper, t.n_double).collect()
    return {row["id"]: row for row in found}


# --- a. SIGTERM drains the request in flight -------------------------------------------------------------------


def in_flight(server: Server) -> bool:
    """Whether a client holds a connection to the server open (its request sent, no answer yet)."""
    try:
        processes = [psutil.Process(server.process.pid), *psutil.Process(server.process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    for process in processes:
        try:
            connections = process.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if any(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port for c in connections):
            return True
    return False


@pytest.mark.parametrize("web_processes", [1, 2])
def test_sigterm_lets_the_request_in_flight_finish_then_exits(pxt_tables, soak_rows, tmp_path, new_id, web_processes):
    key = new_id()
    pxt_tables.items.insert([{"id": key, "name": "draining"}])
    server = Server(tmp_path, "--no-workers", "--workers", str(web_processes))
    try:
        server.wait_ready(web_processes)
        outcome: dict[str, Any] = {}

        def slow_request() -> None:
            try:
                outcome["response"] = httpx.post(f"{server.base}/slow", json={"id": key, "seconds": 8}, timeout=60)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        started = time.monotonic()
        client = threading.Thread(target=slow_request)
        client.start()
        deadline = time.monotonic() + 10
        while not in_flight(server):
            assert client.is_alive() and time.monotonic() < deadline, outcome
            time.sleep(0.05)
        time.sleep(0.5)  # the request is read at once; give it time to reach the query, which sleeps in a UDF
        assert client.is_alive(), outcome
        server.process.send_signal(signal.SIGTERM)
        # every web process starts its graceful shutdown (several: once uvicorn's supervisor, which looks at
        # its signals every 0.5 s, has passed the SIGTERM on)
        deadline = time.monotonic() + 10
        while server.log().count("Shutting down") < web_processes:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        time.sleep(0.2)
        # draining: no new request is served (one process: refused; several: the supervisor's socket still
        # queues connections, which nobody accepts), while the one in flight goes on
        with pytest.raises(httpx.TransportError):
            probe = httpx.get(f"{server.base}/healthz", timeout=1.5)
            pytest.fail(f"a new request was served while draining: {probe.status_code}\n{server.log()}")
        assert client.is_alive(), outcome
        client.join(timeout=60)
        assert "error" not in outcome, f"{outcome['error']!r}\n{server.log()}"
        response = outcome["response"]
        assert response.status_code == 200, response.text
        assert response.json() == {"id": key, "name": "draining"}
        assert time.monotonic() - started >= 8
        # one process: uvicorn re-raises the SIGTERM after its graceful shutdown, serve's handler exits with 143;
        # several: uvicorn's supervisor returns once its processes have drained and exited
        expected = 128 + signal.SIGTERM if web_processes == 1 else 0
        assert server.process.wait(timeout=30) == expected, server.log()
        assert "Waiting for connections to close" in server.log()
    finally:
        server.kill()


# --- b. SIGKILL under concurrent inserts -------------------------------------------------------------------------


def test_sigkill_under_insert_load_loses_no_acknowledged_insert(soak_rows, tmp_path, new_id):
    first_key = new_id()
    # a key range of its own: 8 clients x up to 10,000 inserts each
    base = 10_000_000 + first_key * 100_000
    server = Server(tmp_path, "--no-workers")
    acked: dict[int, dict[str, Any]] = {}
    attempted: set[int] = set()
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(index: int) -> None:
        with httpx.Client(base_url=server.base, timeout=10) as http:
            for i in range(10_000):
                if stop.is_set():
                    return
                key = base + index * 10_000 + i
                body = {"id": key, "client": index, "n": i, "name": soak_rows.expected_name(index, key, i)}
                with lock:
                    attempted.add(key)
                try:
                    r = http.post("/rows", json=body)
                except httpx.TransportError:
                    time.sleep(0.05)  # the server is down: this insert may or may not have happened
                    continue
                if r.status_code == 200:
                    with lock:
                        acked[key] = r.json()
                else:
                    with lock:
                        errors.append(f"{key}: {r.status_code} {r.text[:200]}")

    try:
        server.wait_ready()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        # under load for a while: at least 1.5 s and some acknowledged inserts
        deadline = time.monotonic() + 30
        time.sleep(1.5)
        while True:
            with lock:
                acked_before_kill = len(acked)
            if acked_before_kill >= 16 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        server.kill()
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        stop.set()
        server.kill()
    assert acked_before_kill > 0, "no insert was acknowledged before the kill\n" + server.log()
    assert errors == [], errors[:10]

    # an acknowledged insert answered with the complete row
    for key, body in acked.items():
        assert soak_rows.row_problems(body) == [], body
    restarted = Server(tmp_path, "--no-workers")
    try:
        restarted.wait_ready()
        stored = stored_rows(soak_rows, sorted(attempted))
        missing = sorted(set(acked) - set(stored))
        assert missing == [], f"{len(missing)} acknowledged inserts lost, e.g. {missing[:10]}"
        for key, row in stored.items():
            assert soak_rows.row_problems(row) == [], row
            if key in acked:
                assert row == acked[key]
        # the restarted server serves them, and takes new writes
        sample = sorted(acked)[:: max(1, len(acked) // 20)]
        with httpx.Client(base_url=restarted.base, timeout=10) as http:
            for key in sample:
                r = http.get("/rows/lookup", params={"id": key})
                assert r.status_code == 200 and r.json() == acked[key], r.text
            key = base + 9 * 10_000
            r = http.post("/rows", json={"id": key, "client": 9, "n": 0, "name": soak_rows.expected_name(9, key, 0)})
            assert r.status_code == 200, r.text
    finally:
        restarted.kill()


# --- c. an export target that goes away and comes back -----------------------------------------------------------

EXPORT_SERVICE = """
[[service]]
name = "faults-export"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/plain"
inputs = ["id", "name"]
outputs = ["id", "name", "name_upper"]

[[service.routes]]
type = "query"
path = "/lookup"
query = "tests.pxt_app.queries.item_by_id"
one_row = true
method = "get"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/exported"
inputs = ["id", "name"]
outputs = ["id", "name", "name_upper"]

[service.routes.export_sql]
db_connect = "{url}"
table = "fault_export"
"""


def post(client: Any, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


def test_export_target_renamed_away_and_back_and_its_connections_terminated(
    pxt_tables,
    postgres_url,
    new_id,
):
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)

    def sql(statement: str) -> Any:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement))
            return result.all() if result.returns_rows else None

    def exported_ids() -> list[int]:
        return [row[0] for row in sql("SELECT id FROM fault_export ORDER BY id")]

    sql("DROP TABLE IF EXISTS fault_export_away")
    sql("DROP TABLE IF EXISTS fault_export")
    sql("CREATE TABLE fault_export (id BIGINT PRIMARY KEY, name TEXT, name_upper TEXT)")
    try:
        with serving(service_from_toml(EXPORT_SERVICE.replace("{url}", postgres_url))) as client:
            # more than psycopg's prepare_threshold (5) times: the INSERT becomes a server-side prepared statement
            before = [new_id() for _ in range(6)]
            for key in before:
                assert post(client, "/exported", {"id": key, "name": "before"}).status_code == 200
            assert exported_ids() == before

            sql("ALTER TABLE fault_export RENAME TO fault_export_away")
            away = new_id()
            r = post(client, "/exported", {"id": away, "name": "away"})
            assert r.status_code == 500, r.content
            detail = r.json()["detail"]
            assert detail["error_code"] == "EXPORT_FAILED"
            assert "export_sql to 'fault_export' failed" in detail["message"]
            assert detail["message"].endswith("failed: the target database refused the row")  # details: logged
            # the other routes do not notice
            plain = new_id()
            assert post(client, "/plain", {"id": plain, "name": "plain"}).json()["name_upper"] == "PLAIN"
            assert client.get("/lookup", {"id": plain}).json()["name"] == "plain"
            # the Pixeltable write came first and stays
            assert client.get("/lookup", {"id": away}).json()["name_upper"] == "AWAY"

            sql("ALTER TABLE fault_export_away RENAME TO fault_export")
            back = new_id()
            r = post(client, "/exported", {"id": back, "name": "back"})
            assert r.status_code == 200, r.content
            assert exported_ids() == [*before, back]

            # the target drops every connection (a failover, a restart, an idle timeout) between two requests
            terminated = sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert any(ok for (ok,) in terminated), "the route's pool held no connection to terminate"
            after = new_id()
            r = post(client, "/exported", {"id": after, "name": "after"})
            assert r.status_code == 200, r.content
            assert exported_ids() == [*before, back, after]
    finally:
        sql("DROP TABLE IF EXISTS fault_export_away")
        sql("DROP TABLE IF EXISTS fault_export")
        engine.dispose()
