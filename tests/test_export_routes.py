"""export_sql on routes: TOML and CLI build the same SqlExport, rows land after the Pixeltable write,
a failing target is a 500 naming it, and passwords stay out of output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from pxtserve.config import ServiceConfigError

from .conftest import service_from_toml, serving

REPO = Path(__file__).resolve().parent.parent


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def make_target(url: str, name: str, *, pk: bool) -> sa.Table:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    table = sa.Table(
        name,
        md,
        sa.Column("id", sa.Integer, primary_key=pk, autoincrement=False),
        sa.Column("name", sa.String(200)),
        sa.Column("name_upper", sa.String(200)),
    )
    md.drop_all(engine, [table])
    md.create_all(engine, [table])
    engine.dispose()
    return table


def rows_of(url: str, table: sa.Table) -> list[tuple]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c.id))]
    engine.dispose()
    return rows


def toml(url: str, target: str, method: str, kind: str = "insert") -> str:
    inputs = '["id", "name"]' if kind == "insert" else '["name"]'
    return f"""
[[service]]
name = "x"
[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/plain"
inputs = ["id", "name"]
outputs = ["id", "name", "name_upper"]
[[service.routes]]
type = "{kind}"
table = "pxtserve_test.items"
path = "/exported"
inputs = {inputs}
outputs = ["id", "name", "name_upper"]
[service.routes.export_sql]
db_connect = "{url}"
table = "{target}"
method = "{method}"
"""


@pytest.fixture(params=["sqlite_url", "postgres_url", "mariadb_url"])
def target_url(request) -> str:
    return request.getfixturevalue(request.param)


def test_insert_route_exports_the_response_row(pxt_tables, target_url, new_id):
    table = make_target(target_url, "exp_insert", pk=False)
    with serving(service_from_toml(toml(target_url, "exp_insert", "insert"))) as client:
        key = new_id()
        r = post(client, "/exported", {"id": key, "name": "ex"})
        assert r.status_code == 200, r.content
        assert rows_of(target_url, table) == [(key, "ex", "EX")]


def test_update_route_merges_into_the_target(pxt_tables, target_url, new_id):
    table = make_target(target_url, "exp_merge", pk=True)
    key = new_id()
    with serving(service_from_toml(toml(target_url, "exp_merge", "merge", kind="update"))) as client:
        assert post(client, "/plain", {"id": key, "name": "first"}).status_code == 200
        assert post(client, "/exported", {"id": key, "name": "second"}).status_code == 200
        assert rows_of(target_url, table) == [(key, "second", "SECOND")]
        assert post(client, "/exported", {"id": key, "name": "third"}).status_code == 200
        assert rows_of(target_url, table) == [(key, "third", "THIRD")]


def test_export_failure_after_commit_is_500_naming_the_target_and_others_keep_working(pxt_tables, postgres_url, new_id):
    make_target(postgres_url, "exp_gone", pk=False)
    with serving(service_from_toml(toml(postgres_url, "exp_gone", "insert"))) as client:
        engine = sa.create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE exp_gone"))
        engine.dispose()
        key = new_id()
        r = post(client, "/exported", {"id": key, "name": "lost?"})
        assert r.status_code == 500
        assert r.json()["detail"]["error_code"] == "EXPORT_FAILED"
        assert r.json()["detail"]["message"] == "export_sql to 'exp_gone' failed: the target database refused the row"
        # the Pixeltable write happened first and stays (no rollback, as specified)
        import pixeltable as pxt

        t = pxt.get_table("pxtserve_test.items")
        assert t.where(t.id == key).count() == 1
        assert post(client, "/plain", {"id": new_id(), "name": "fine"}).status_code == 200


def test_update_export_with_no_matching_target_row_is_500(pxt_tables, sqlite_url, new_id):
    make_target(sqlite_url, "exp_strict", pk=True)
    key = new_id()
    with serving(service_from_toml(toml(sqlite_url, "exp_strict", "update", kind="update"))) as client:
        post(client, "/plain", {"id": key, "name": "a"})
        r = post(client, "/exported", {"id": key, "name": "b"})
        assert r.status_code == 500
        assert r.json()["detail"]["message"] == (
            "export_sql to 'exp_strict' failed: no target row matched the row's primary key"
        )
        assert str(key) not in r.text


def test_a_constraint_violation_is_a_500_without_the_row_constraint_or_sql(pxt_tables, postgres_url, new_id, caplog):
    table = make_target(postgres_url, "exp_unique", pk=True)
    key = new_id()
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.insert(table).values(id=key, name="already there"))
    engine.dispose()
    with serving(service_from_toml(toml(postgres_url, "exp_unique", "insert"))) as client:
        r = post(client, "/exported", {"id": key, "name": "secret-value-7"})
    assert r.status_code == 500
    detail = r.json()["detail"]
    assert detail == {
        "error_code": "EXPORT_FAILED",
        "message": "export_sql to 'exp_unique' failed: a constraint of the target table refused the row",
    }
    # the database's own words are logged for the operator
    assert "exp_unique_pkey" in caplog.text and "secret-value-7" not in r.text


def test_missing_target_table_is_a_registration_error(pxt_tables, sqlite_url):
    with (
        pytest.raises(ServiceConfigError) as info,
        serving(service_from_toml(toml(sqlite_url, "no_such_target", "insert"))),
    ):
        pass
    assert "route #2 (/exported): field 'export_sql'" in str(info.value)
    assert "no_such_target" in str(info.value)


def test_env_vars_in_db_connect_are_expanded_and_undefined_ones_are_errors(pxt_tables, tmp_path, monkeypatch):
    db = tmp_path / "env.db"
    make_target(f"sqlite:///{db}", "exp_env", pk=False)
    monkeypatch.setenv("PXTSERVE_TEST_DB_DIR", str(tmp_path))
    config = service_from_toml(toml("sqlite:///${PXTSERVE_TEST_DB_DIR}/env.db", "exp_env", "insert"))
    assert config.routes[1].export_sql.db_connect == f"sqlite:///{db}"
    monkeypatch.delenv("PXTSERVE_TEST_DB_DIR")
    with pytest.raises(ServiceConfigError, match="environment variable PXTSERVE_TEST_DB_DIR, which is not set"):
        service_from_toml(toml("sqlite:///${PXTSERVE_TEST_DB_DIR}/env.db", "exp_env", "insert"))


@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_password_never_in_dry_run_output_or_errors(pxt_tables, postgres_url, tmp_path, form):
    make_target(postgres_url, "exp_secret", pk=False)
    url = sa.make_url(postgres_url)  # trust auth ignores the password
    if form == "userinfo":  # postgresql://user:pw@host/db
        url = url.set(password="hunter2-secret")
    else:  # postgresql://user@host/db?password=pw
        url = url.set(password=None).update_query_dict({"password": "hunter2-secret"})
    rendered = url.render_as_string(hide_password=False)
    unreachable = "postgresql+psycopg://u:${PG_PASSWORD}@127.0.0.1:1/nowhere"
    if form == "query":
        unreachable = "postgresql+psycopg://u@127.0.0.1:1/nowhere?password=${PG_PASSWORD}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "PG_PASSWORD": "hunter2-secret"}
    service = tmp_path / "s.toml"
    service.write_text(toml(rendered.replace("hunter2-secret", "${PG_PASSWORD}"), "exp_secret", "insert"))
    result = subprocess.run(  # noqa: PLW1510 - the tests assert on returncode
        [sys.executable, "manage.py", "serve", "x", "--config", str(service), "--dry-run", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr
    export = json.loads(result.stdout)["routes"][1]["export_sql"]
    assert export["table"] == "exp_secret" and "***" in export["db_connect"]
    # an unreachable target: the error names it, without the password, and so does the CLI flag path
    result = subprocess.run(  # noqa: PLW1510 - the tests assert on returncode
        [sys.executable, "manage.py", "serve", "insert", "--table", "pxtserve_test.items", "--path", "/e",
         "--inputs", "id", "name", "--outputs", "id", "name",
         "--export-sql-db-connect", unreachable,
         "--export-sql-table", "t", "--dry-run"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode != 0
    assert "field 'export_sql'" in result.stderr and "Traceback" not in result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr


def background_toml(url: str, target: str) -> str:
    return toml(url, target, "insert").replace('path = "/exported"', 'path = "/exported"\nbackground = true')


@pytest.mark.django_db(transaction=True)
def test_background_export_runs_in_the_job_and_its_failure_fails_the_job(pxt_tables, postgres_url, new_id):
    table = make_target(postgres_url, "exp_background", pk=False)
    with serving(service_from_toml(background_toml(postgres_url, "exp_background"))) as client:
        key = new_id()
        r = post(client, "/exported", {"id": key, "name": "bg"})
        assert r.status_code == 202, r.content
        status = client.get(r.json()["job_url"].removeprefix("http://testserver")).json()
        assert status["status"] == "done" and status["result"] == {"id": key, "name": "bg", "name_upper": "BG"}
        assert rows_of(postgres_url, table) == [(key, "bg", "BG")]
        engine = sa.create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE exp_background"))
        engine.dispose()
        r = post(client, "/exported", {"id": new_id(), "name": "lost"})
        status = client.get(r.json()["job_url"].removeprefix("http://testserver")).json()
        assert status["status"] == "error"
        assert "exp_background" in status["error"] and status["error_detail"]["error_code"] == "EXPORT_FAILED"


def test_export_and_file_response_are_mutually_exclusive(pxt_tables, sqlite_url):
    text = f"""
[[service]]
name = "x"
[[service.routes]]
type = "insert"
table = "pxtserve_test.images"
path = "/i"
outputs = ["thumb"]
return_fileresponse = true
[service.routes.export_sql]
db_connect = "{sqlite_url}"
table = "t"
"""
    message = "field 'export_sql': export_sql and return_fileresponse are mutually"
    with pytest.raises(ServiceConfigError, match=message), serving(service_from_toml(text)):
        pass
