"""Several nodes: two server processes and a separately started worker cluster share Pixeltable's
catalog on PostgreSQL, Django's database on PostgreSQL and a Redis job broker."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from tests.processes import free_port, stop_group, wait_until_up

REPO = Path(__file__).resolve().parent.parent

SERVICE = """
[[service]]
name = "multinode"
modules = ["tests.pxt_app.multinode_schema"]
[[service.routes]]
type = "insert"
table = "multinode.events"
path = "/events"
[[service.routes]]
type = "insert"
table = "multinode.events"
path = "/events/bg"
background = true
[[service.routes]]
type = "query"
path = "/events/get"
query = "tests.pxt_app.multinode_schema.event_by_id"
one_row = true
method = "get"
"""


def test_two_nodes_and_a_separate_worker_share_one_catalog_database_and_broker(postgres_url, redis_url, tmp_path):
    base = sa.make_url(postgres_url)
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    django_db = f"pxtserve_mn_django_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{django_db}"'))
    service = tmp_path / "multinode.toml"
    service.write_text(SERVICE)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        # Pixeltable's catalog on the shared PostgreSQL; media on storage every node reaches (one dir here)
        "PIXELTABLE_DB_CONNECT_STR": postgres_url,
        "PIXELTABLE_HOME": str(tmp_path / "shared-pixeltable-home"),
        "DJANGO_DATABASE_URL": base.set(database=django_db).render_as_string(hide_password=False),
        "PXTSERVE_REDIS_URL": redis_url,
        # what `manage.py qcluster` serves: the same service file
        "PXTSERVE_CONFIG": str(service),
        "PXTSERVE_SERVICE": "multinode",
        "PXTSERVE_VAR_DIR": str(tmp_path / "var"),
    }
    env.pop("PXTSERVE_SERVICE_JSON", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=REPO, env=env, check=True, timeout=180
    )
    procs: list[subprocess.Popen] = []
    try:
        ports = [free_port(), free_port()]
        for port in ports:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "manage.py",
                        "serve",
                        "multinode",
                        "--config",
                        str(service),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--no-workers",
                    ],
                    cwd=REPO,
                    env=env,
                    start_new_session=True,
                )
            )
        node_a, node_b = (f"http://127.0.0.1:{p}" for p in ports)
        for node, proc in zip((node_a, node_b), procs):
            wait_until_up(f"{node}/healthz", proc)

        # a row inserted through one node is read through the other
        r = httpx.post(f"{node_a}/events", json={"id": 1, "text": "from a"}, timeout=30)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{node_b}/events/get", params={"id": 1}, timeout=30).json() == {
            "id": 1,
            "text": "from a",
            "shout": "FROM A",
        }

        # a job submitted to node A waits in Redis until a worker started on its own runs it
        r = httpx.post(f"{node_a}/events/bg", json={"id": 2, "text": "queued"}, timeout=30)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert httpx.get(f"{node_b}/jobs/{job_id}").json()["status"] == "pending"
        worker = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=REPO, env=env, start_new_session=True)
        procs.append(worker)
        deadline = time.monotonic() + 120
        while (status := httpx.get(f"{node_b}/jobs/{job_id}", timeout=10).json())["status"] in ("pending", "running"):
            assert time.monotonic() < deadline, "the job was not run"
            time.sleep(0.5)
        assert status["status"] == "done" and status["result"] == {"id": 2, "text": "queued", "shout": "QUEUED"}
        assert httpx.get(f"{node_a}/events/get", params={"id": 2}).json()["shout"] == "QUEUED"
    finally:
        for proc in reversed(procs):
            stop_group(proc)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{django_db}" WITH (FORCE)'))
        admin.dispose()
