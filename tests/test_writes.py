"""Write coordination: queued inserts/updates to one table go in as one call, and each request
still gets exactly its own row or its own error."""

from __future__ import annotations

import threading
import time
from typing import Any

import pixeltable as pxt
import pytest

from pxtserve.writes import TableWriter


def table_version(t: pxt.Table) -> int:
    return t.get_metadata()["version"]


def run_queued(writer: TableWriter, calls: list[Any]) -> list[tuple[str, Any]]:
    """Start every call while the writer is held, wait until all are queued, then let them go."""
    results: list[tuple[str, Any]] = [("pending", None)] * len(calls)

    def worker(i: int) -> None:
        try:
            results[i] = ("ok", calls[i]())
        except Exception as exc:  # noqa: BLE001 - collected for the assertions
            results[i] = ("error", exc)

    writer._gate.clear()
    # the writer may be waiting for work already: let it take nothing until every call is queued
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 10
    while len(writer._queue) < len(calls):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    writer._gate.set()
    for th in threads:
        th.join(30)
    return results


@pytest.fixture
def items(pxt_tables) -> pxt.Table:
    return pxt.get_table("pxtserve_test.items")


def test_queued_inserts_go_in_as_one_call_and_each_gets_its_own_row(items, new_id):
    writer = TableWriter(items, ["id"])
    keys = [new_id() for _ in range(16)]
    before = table_version(items)
    results = run_queued(writer, [lambda k=k: writer.insert({"id": k, "name": f"n{k}"}) for k in keys])
    assert table_version(items) == before + 1  # one insert call for sixteen requests
    assert [r[0] for r in results] == ["ok"] * 16
    assert [r[1]["id"] for r in results] == keys
    assert [r[1]["name_upper"] for r in results] == [f"N{k}" for k in keys]


def test_one_bad_row_fails_only_its_own_request(items, new_id):
    writer = TableWriter(items, ["id"])
    taken = new_id()
    writer.insert({"id": taken, "name": "first"})
    keys = [new_id() for _ in range(5)]
    calls = [lambda k=k: writer.insert({"id": k, "name": "ok"}) for k in keys]
    calls.insert(2, lambda: writer.insert({"id": taken, "name": "duplicate"}))
    results = run_queued(writer, calls)
    statuses = [r[0] for r in results]
    assert statuses == ["ok", "ok", "error", "ok", "ok", "ok"]
    assert isinstance(results[2][1], pxt.Error) and "Duplicate primary key" in str(results[2][1])
    assert items.where(items.id.isin(keys)).count() == 5
    assert items.where(items.id == taken).select(items.name).collect()["name"] == ["first"]


def test_queued_updates_batch_and_a_missing_key_gets_none(items, new_id):
    writer = TableWriter(items, ["id"])
    keys = [new_id() for _ in range(6)]
    for k in keys:
        writer.insert({"id": k, "name": "before"})
    missing = new_id()
    before = table_version(items)
    calls = [lambda k=k: writer.update({"id": k, "name": f"after{k}"}) for k in keys]
    calls.append(lambda: writer.update({"id": missing, "name": "nobody"}))
    results = run_queued(writer, calls)
    assert table_version(items) == before + 1
    assert [r[1]["name_upper"] for r in results[:-1]] == [f"AFTER{k}" for k in keys]
    assert results[-1] == ("ok", None)


def test_the_same_key_twice_is_not_batched_together(items, new_id):
    writer = TableWriter(items, ["id"])
    key = new_id()
    writer.insert({"id": key, "name": "v0"})
    results = run_queued(
        writer,
        [lambda: writer.update({"id": key, "name": "v1"}), lambda: writer.update({"id": key, "name": "v2"})],
    )
    assert [r[1]["name"] for r in results] == ["v1", "v2"]
    assert items.where(items.id == key).select(items.name).collect()["name"] == ["v2"]


def test_queued_deletes_by_key_go_in_as_one_call_and_each_gets_its_own_count(items, new_id):
    writer = TableWriter(items, ["id"])
    keys = [new_id() for _ in range(4)]
    items.insert([{"id": k, "name": "del"} for k in keys])
    never = new_id()
    before = table_version(items)
    calls = [lambda k=k: writer.delete({"id": k}) for k in [*keys, never]]
    calls.append(lambda: writer.delete({"id": keys[0]}))  # the same key again: not in the same call
    results = run_queued(writer, calls)
    # one delete call for the five distinct keys (the missing one included); the repeated key's own
    # call comes after it, finds nothing and makes no new version
    assert table_version(items) == before + 1
    assert [r[1] for r in results] == [1, 1, 1, 1, 0, 0]
    assert items.where(items.id.isin(keys)).count() == 0


def test_deletes_on_other_columns_are_written_one_call_each(items, new_id):
    writer = TableWriter(items, ["id"])
    tag = f"del-{new_id()}"
    items.insert([{"id": new_id(), "name": "a", "tag": tag} for _ in range(3)])
    before = table_version(items)
    results = run_queued(writer, [lambda: writer.delete({"tag": tag}), lambda: writer.delete({"tag": tag})])
    # each call may match many rows, so each keeps its own call and its own count
    assert sorted(r[1] for r in results) == [0, 3]
    assert table_version(items) == before + 1  # the second found nothing to delete: no new version
