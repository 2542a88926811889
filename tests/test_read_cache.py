"""What the read path reads instead of rebuilding, and that it still sees every change (issue 15)."""

import json
import subprocess
import sys
import threading
from typing import Any

import httpx
import pixeltable as pxt
import pytest

from pxtserve.pxt_internals import PreparedRead, stored_schema_version
from pxtserve.router import PixeltableRouter
from tests.processes import REPO, free_port, serve_env, stop_process, wait_until_up

from .conftest import mounted
from .test_routes_query import SERVICE  # an insert route at /items and a GET one_row lookup at /lookup


def test_stored_schema_version_follows_changes_and_drops(pxt_tables):
    """The schema check's cheap read gives get_metadata's schema_version, after a change too; a dropped table is
    TABLE_NOT_FOUND, as get_metadata says."""
    t = pxt.create_table("pxtserve_test.versioned", {"id": pxt.Required[pxt.Int]}, if_exists="replace")
    assert stored_schema_version(t) == t.get_metadata()["schema_version"]
    before = stored_schema_version(t)
    t.add_column(extra=pxt.String | None)
    assert stored_schema_version(t) == t.get_metadata()["schema_version"] != before
    pxt.drop_table("pxtserve_test.versioned")
    with pytest.raises(pxt.Error) as raised:
        stored_schema_version(t)
    assert raised.value.error_code is pxt.ErrorCode.TABLE_NOT_FOUND


def _fresh_table(name: str) -> pxt.Table:
    t = pxt.create_table(
        f"pxtserve_test.{name}",
        {"id": pxt.Required[pxt.Int], "name": pxt.String},
        primary_key="id",
        if_exists="replace",
    )
    t.insert([{"id": 1, "name": "one"}])
    return t


def _lookup_router(t: pxt.Table) -> PixeltableRouter:
    @pxt.query
    def by_id(id: int):
        return t.where(t.id == id).select(t.id, t.name)

    router = PixeltableRouter()
    router.add_query_route(path="/by-id", query=by_id, method="get", one_row=True)
    router.add_insert_route(t, path="/rows")
    return router


def _assert_not_found(answer: Any, error_code: str) -> None:
    assert answer.status_code == 404, answer.content
    assert answer.json()["detail"]["error_code"] == error_code


def test_a_write_is_seen_by_the_next_read(pxt_tables):
    """A row written through the route, or by Pixeltable directly (another writer), is in the very next read."""
    t = _fresh_table("read_cache_writes")
    with mounted(_lookup_router(t)) as client:
        assert client.get("/api/pxt/by-id", {"id": 1}).json() == {"id": 1, "name": "one"}
        assert client.get("/api/pxt/by-id", {"id": 2}).status_code == 404
        inserted = client.post("/api/pxt/rows", json.dumps({"id": 2, "name": "two"}), content_type="application/json")
        assert inserted.status_code == 200
        assert client.get("/api/pxt/by-id", {"id": 2}).json() == {"id": 2, "name": "two"}
        t.update({"name": "uno"}, where=t.id == 1)
        assert client.get("/api/pxt/by-id", {"id": 1}).json() == {"id": 1, "name": "uno"}
        t.delete(where=t.id == 2)
        assert client.get("/api/pxt/by-id", {"id": 2}).status_code == 404


def test_a_schema_change_is_served_by_a_rebuilt_plan(pxt_tables):
    """A column added after registration: the query's plan is rebuilt and the read still answers, with new rows."""
    t = _fresh_table("read_cache_schema")
    with mounted(_lookup_router(t)) as client:
        assert client.get("/api/pxt/by-id", {"id": 1}).json() == {"id": 1, "name": "one"}
        t.add_column(extra=pxt.Int | None)
        t.insert([{"id": 3, "name": "three", "extra": 7}])
        assert client.get("/api/pxt/by-id", {"id": 1}).json() == {"id": 1, "name": "one"}
        assert client.get("/api/pxt/by-id", {"id": 3}).json() == {"id": 3, "name": "three"}
        t.drop_column("extra")
        assert client.get("/api/pxt/by-id", {"id": 3}).json() == {"id": 3, "name": "three"}


def test_a_dropped_column_the_query_selects_is_an_error_not_a_stale_plan(pxt_tables):
    """The plan kept for the template is not reused once a column it selects is gone: Pixeltable's not-found."""
    t = _fresh_table("read_cache_dropped_column")
    t.add_column(extra=pxt.Int | None)

    @pxt.query
    def with_extra(id: int):
        return t.where(t.id == id).select(t.id, t.extra)

    router = PixeltableRouter()
    router.add_query_route(path="/with-extra", query=with_extra, method="get", one_row=True)
    with mounted(router) as client:
        assert client.get("/api/pxt/with-extra", {"id": 1}).json() == {"id": 1, "extra": None}
        t.drop_column("extra")
        _assert_not_found(client.get("/api/pxt/with-extra", {"id": 1}), "COLUMN_NOT_FOUND")


def test_a_dropped_table_is_an_error_not_stale_rows(pxt_tables):
    """After the table is dropped the read answers Pixeltable's not-found error (JSON, not a 500), never its rows."""
    t = _fresh_table("read_cache_dropped")
    with mounted(_lookup_router(t)) as client:
        assert client.get("/api/pxt/by-id", {"id": 1}).status_code == 200
        pxt.drop_table("pxtserve_test.read_cache_dropped")
        _assert_not_found(client.get("/api/pxt/by-id", {"id": 1}), "TABLE_NOT_FOUND")


def test_the_prepared_read_gives_collects_rows(pxt_tables):
    """The prepared path answers what Query._collect answers, as dicts of the template's output names."""
    t = _fresh_table("read_cache_pending")

    @pxt.query
    def by_id(id: int):
        return t.where(t.id == id).select(t.id, t.name)

    prepared = PreparedRead(by_id)
    expected = [dict(row) for row in by_id.template_query._collect(args={"id": 1}, media_as_urls=True)]
    assert prepared.rows({"id": 1}) == expected == [{"id": 1, "name": "one"}]
    assert prepared.rows({"id": 5}) == []


def test_a_write_through_one_server_is_read_through_another(pxt_tables, new_id, tmp_path):
    """Two `serve` processes on one Pixeltable home: what one writes, the other's next read returns."""
    (tmp_path / "readers.toml").write_text(SERVICE)
    servers: list[tuple[str, subprocess.Popen]] = []
    try:
        for n in range(2):  # one after the other: servers starting together race on the embedded PostgreSQL
            port = free_port()
            command = [sys.executable, "manage.py", "serve", "t", "--config", str(tmp_path / "readers.toml")]
            command += ["--host", "127.0.0.1", "--port", str(port), "--no-workers"]
            log = tmp_path / f"serve-{n}.log"
            with open(log, "w") as out:
                env = serve_env(tmp_path / f"s{n}")
                (tmp_path / f"s{n}").mkdir()
                process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
            servers.append((f"http://127.0.0.1:{port}", process))
            wait_until_up(f"http://127.0.0.1:{port}/healthz", process, 180, log.read_text)
        (a, _), (b, _) = servers
        first, second = new_id(), new_id()
        assert httpx.get(f"{b}/lookup", params={"id": first}).status_code == 404  # B has planned the read
        assert httpx.post(f"{a}/items", json={"id": first, "name": "from a"}).status_code == 200
        assert httpx.get(f"{b}/lookup", params={"id": first}).json()["name"] == "from a"
        assert httpx.post(f"{b}/items", json={"id": second, "name": "from b"}).status_code == 200
        assert httpx.get(f"{a}/lookup", params={"id": second}).json()["name"] == "from b"
        assert httpx.get(f"{a}/lookup", params={"id": first}).json()["name"] == "from a"
    finally:
        for _, process in servers:
            stop_process(process)


def _limited_query(t: pxt.Table) -> Any:
    @pxt.query
    def first_rows(limit: int = 10):
        return t.order_by(t.id).select(t.id, t.name).limit(limit)

    return first_rows


def test_a_failed_call_does_not_spoil_the_next_ones_plan(pxt_tables):
    """A call that fails inside its transaction (a negative limit, the fuzz's find), as the first call in a thread:
    the next calls in that thread answer rows. Pixeltable reloads the tables after the error but kept the plan,
    whose SQL then named the table twice (a 500)."""
    prepared = PreparedRead(_limited_query(_fresh_table("read_cache_failed_call")))
    answers: list[Any] = []

    def calls() -> None:
        for limit in (-1, 10, 10):
            try:
                answers.append(prepared.rows({"limit": limit}))
            except pxt.Error as e:
                answers.append(e)

    thread = threading.Thread(target=calls)  # a thread whose Pixeltable runtime has not read the table yet
    thread.start()
    thread.join()
    assert isinstance(answers[0], pxt.Error) and "'limit' parameter must be >= 0" in str(answers[0]), answers
    assert answers[1:] == [[{"id": 1, "name": "one"}]] * 2, answers


def test_a_bad_argument_then_a_good_one_over_http(pxt_tables):
    """The same through a route: a 422 naming the argument, then the rows."""
    router = PixeltableRouter()
    router.add_query_route(path="/first", query=_limited_query(_fresh_table("read_cache_bad_argument")))
    with mounted(router) as client:
        bad = client.post("/api/pxt/first", json.dumps({"limit": -1}), content_type="application/json")
        assert bad.status_code == 422 and bad.json()["detail"]["error_code"] == "INVALID_ARGUMENT", bad.content
        for _ in range(3):
            good = client.post("/api/pxt/first", json.dumps({"limit": 5}), content_type="application/json")
            assert good.status_code == 200 and good.json() == {"rows": [{"id": 1, "name": "one"}]}, good.content
