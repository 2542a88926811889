"""`manage.py serve` as a user runs it: dry runs, bad files, single-endpoint mode, and a real server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port, wait_until_up

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo" / "service.toml"


def manage(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the tests assert on returncode
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**os.environ, **(env or {}), "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_dry_run_json_describes_every_route(pxt_tables):
    result = manage("serve", "demo", "--config", str(DEMO), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["name"] == "demo" and described["docs"] == "/docs"
    routes = {(r["method"], r["path"]): r for r in described["routes"]}
    assert routes[("GET", "/notes/lookup")]["one_row"] is True
    assert routes[("POST", "/notes/update")]["primary_key"] == ["id"]
    assert len(routes) == 14


def test_dry_run_text_and_overrides(pxt_tables):
    result = manage("serve", "demo", "--config", str(DEMO), "--dry-run", "--prefix", "/v1", "--port", "9123")
    assert result.returncode == 0, result.stderr
    assert "prefix '/v1'" in result.stdout and "0.0.0.0:9123" in result.stdout
    assert "GET   /notes/lookup" in result.stdout


def test_pyproject_is_the_default_config(pxt_tables, tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[[tool.pixeltable.service]]\nname = "pp"\n[[tool.pixeltable.service.routes]]\n'
        'type = "delete"\ntable = "pxtserve_test.items"\npath = "/d"\n'
    )
    result = subprocess.run(  # noqa: PLW1510 - the tests assert on returncode
        [sys.executable, str(REPO / "manage.py"), "serve", "pp", "--dry-run", "--json"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["routes"][0]["path"] == "/d"


def test_bad_file_exits_non_zero_with_one_message_and_no_traceback(pxt_tables, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[service]]\nname = "b"\n[[service.routes]]\ntype = "insert"\ntable = "pxtserve_test.items"\n'
        'path = "/ok"\n[[service.routes]]\ntype = "insert"\ntable = "pxtserve_test.items"\npath = "/x"\n'
        'outputs = ["no_such_column"]\n'
    )
    result = manage("serve", "b", "--config", str(bad), "--dry-run")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert (
        f"{bad}: service 'b': route #2 (/x): field 'outputs': unknown output column 'no_such_column'" in result.stderr
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--workers", "2", "--job-runner", "in-process"], {}, "--job-runner: the in-process job runner needs one"),
        (["--workers", "2"], {"PXTSERVE_JOB_RUNNER": "in-process"}, "the in-process job runner needs one web process"),
        ([], {"PXTSERVE_JOB_RUNNER": "threads"}, "JOB_RUNNER"),
        (["--job-runner", "threads"], {}, "invalid choice: 'threads'"),
    ],
)
def test_a_job_runner_that_cannot_run_stops_serve_before_anything_starts(args, env, expected):
    result = manage("serve", "demo", "--config", str(DEMO), "--port", str(free_port()), *args, env=env, timeout=60)
    assert result.returncode != 0
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "Serving" not in result.stdout


def test_single_endpoint_mode_builds_the_same_route(pxt_tables):
    result = manage(
        "serve", "query", "--query", "tests.pxt_app.queries.item_by_id", "--path", "/lookup",
        "--one-row", "--method", "get", "--dry-run", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [route] = json.loads(result.stdout)["routes"]
    assert (route["type"], route["method"], route["one_row"], route["inputs"]) == ("query", "GET", True, ["id"])
    result = manage(
        "serve", "insert", "--table", "pxtserve_test.items", "--path", "/i", "--inputs", "id", "name",
        "--outputs", "id", "name_upper", "--dry-run", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [route] = json.loads(result.stdout)["routes"]
    assert route["inputs"] == ["id", "name"] and route["outputs"] == ["id", "name_upper"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["insert", "--table", "pxtserve_test.items", "--path", "/i", "--match-columns", "id"],
            "field 'match_columns': unknown field",
        ),
        (["delete", "--table", "pxtserve_test.items", "--path", "d"], "field 'path'"),
        (["update", "--table", "pxtserve_test.nopk", "--path", "/u"], "has no primary key"),
        (["demo", "--table", "pxtserve_test.items"], "single-endpoint flags need a route type"),
    ],
)
def test_single_endpoint_errors(pxt_tables, args, expected):
    result = manage("serve", *args, "--dry-run")
    assert result.returncode != 0
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_serve_runs_a_real_http_server(pxt_tables, tmp_path, new_id):
    port = free_port()
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "PXTSERVE_VAR_DIR": str(tmp_path),
        "PXTSERVE_DJANGO_DB": str(db_dir / "django.sqlite3"),
    }
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "demo", "--config", str(DEMO), "--port", str(port),
         "--host", "127.0.0.1", "--prefix", "/api", "--no-workers"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/api"
    try:
        wait_until_up(f"{base}/docs", proc, output=lambda: proc.stdout.read() if proc.stdout else "")
        key = new_id()
        r = httpx.post(f"{base}/notes", json={"id": key, "title": "hi", "body": "there"})
        assert r.status_code == 200, r.text
        assert r.json()["title_upper"] == "HI"
        assert httpx.get(f"{base}/notes/lookup", params={"id": key}).json()["body"] == "there"
        assert httpx.post(f"{base}/notes/delete", json={"id": key}).json() == {"num_rows": 1}
        doc = httpx.get(f"{base}/openapi.json").json()
        assert doc["info"]["title"] == "pxtserve demo" and "/api/notes" in doc["paths"]
        root = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{root}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{root}/readyz").json()["status"] == "ok"
        # Django's database gone: not ready, and the check says which part failed
        shutil.rmtree(db_dir)
        r = httpx.get(f"{root}/readyz")
        assert r.status_code == 503 and r.json()["checks"]["database"] == "failed"
        assert r.json()["checks"]["pixeltable"] == "ok"
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert f"Serving 'demo' at http://127.0.0.1:{port}/api/  (docs: http://127.0.0.1:{port}/api/docs)" in out
    # clients that close their connection leave no unretrieved task errors in the log
    assert "Task exception was never retrieved" not in out
    # the access log is on by default: a line per request
    assert '"POST /api/notes HTTP/1.1" 200' in out


def test_serve_with_several_web_processes(pxt_tables, tmp_path, new_id):
    import psutil

    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "PXTSERVE_VAR_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "demo", "--config", str(DEMO), "--port", str(port),
         "--host", "127.0.0.1", "--no-workers", "--workers", "2", "--no-access-log"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/healthz", proc, output=lambda: proc.stdout.read() if proc.stdout else "")
        web = [c for c in psutil.Process(proc.pid).children() if "multiprocessing" in " ".join(c.cmdline())]
        assert len(web) >= 2, [c.cmdline() for c in psutil.Process(proc.pid).children()]
        keys = [new_id() for _ in range(20)]
        with httpx.Client(base_url=base) as client:
            for k in keys:
                assert client.post("/notes", json={"id": k, "title": "w", "body": "b"}).status_code == 200
            # every process sees every row (one catalog)
            for k in keys:
                assert httpx.get(f"{base}/notes/lookup", params={"id": k}).json()["id"] == k
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    # --no-access-log: no line per request, in any of the processes
    assert "Uvicorn running" in out or "Started parent process" in out, out[-2000:]
    assert "/notes HTTP/1.1" not in out and "/notes/lookup" not in out
