"""Write coordination: requests that write one table queue for it inside the process
instead of colliding on Pixeltable's table lock, and inserts (and updates) that arrive
while a write is running go in together as one call (group commit).

Pixeltable writers take a table's lock with NOWAIT and, on conflict, sleep 0.1-0.5 s
before retrying; sixteen concurrent writers to one table spend most of their time
asleep. Here one thread at a time writes a table; whoever gets the turn takes every
request queued meanwhile and writes them with one `insert([...], return_rows=True)`
(or `batch_update`). A single client never waits: its batch is just itself.

Each request still gets exactly its own row and its own error: a batch that fails is
retried row by row, so only the guilty request sees the error. Coordination is per
process; across processes (or machines) Pixeltable's database lock still guards
correctness.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pixeltable as pxt

from pxtserve import conf


class _Request:
    __slots__ = ("done", "error", "result", "row")

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class _GroupCommit:
    """A queue of rows for one kind of write; `write_batch` writes a list of rows and
    returns one result per row (or raises for the whole batch)."""

    def __init__(self, turn: threading.Lock, write_batch: Callable[[list[dict[str, Any]]], Sequence[Any]]) -> None:
        self._turn = turn
        self._write_batch = write_batch
        self._queue: list[_Request] = []
        self._queue_lock = threading.Lock()

    def submit(self, row: dict[str, Any], can_join: Callable[[list[_Request], _Request], bool]) -> Any:
        request = _Request(row)
        with self._queue_lock:
            self._queue.append(request)
        while not request.done:
            with self._turn:
                if request.done:
                    break
                self._run(self._take(can_join))
        return request.outcome()

    def _take(self, can_join: Callable[[list[_Request], _Request], bool]) -> list[_Request]:
        limit = max(1, int(conf.get("WRITE_BATCH_MAX")))
        with self._queue_lock:
            batch: list[_Request] = []
            rest: list[_Request] = []
            for request in self._queue:
                if len(batch) < limit and (not batch or can_join(batch, request)):
                    batch.append(request)
                else:
                    rest.append(request)
            self._queue = rest
        return batch

    def _run(self, batch: list[_Request]) -> None:
        try:
            results = self._write_batch([r.row for r in batch])
        except BaseException as exc:  # noqa: BLE001 - every waiting request must get an outcome
            if len(batch) == 1 or not isinstance(exc, pxt.Error):
                for request in batch:
                    request.finish(error=exc)
                return
            # one bad row fails the whole call: write them one by one so only its request gets the error
            for request in batch:
                self._run([request])
            return
        for request, result in zip(batch, results):
            request.finish(result=result)


class TableWriter:
    """Every write this process makes to one table goes through here."""

    def __init__(self, table: pxt.Table, primary_key: list[str]) -> None:
        self.table = table
        self.primary_key = primary_key
        self._turn = threading.Lock()
        self._inserts = _GroupCommit(self._turn, self._insert_rows)
        self._updates = _GroupCommit(self._turn, self._update_rows)

    def insert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Insert one row; the stored row, computed columns included."""
        return self._inserts.submit(row, lambda batch, new: True)

    def update(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """Update the row with `row`'s primary key; the updated row, or None when no row has that key."""
        return self._updates.submit(row, self._can_join_update)

    def delete(self, where: Any) -> int:
        with self._turn:
            return self.table.delete(where=where).num_rows

    def _insert_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        status = self.table.insert(rows, return_rows=True)
        stored = status.rows or []
        if len(stored) != len(rows):
            raise RuntimeError(f"insert of {len(rows)} rows returned {len(stored)} rows")
        return stored

    def _key(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[k] for k in self.primary_key)

    def _can_join_update(self, batch: list[_Request], new: _Request) -> bool:
        # batch_update takes rows of one shape, and a key twice in one call would be ambiguous
        shape = set(batch[0].row)
        return set(new.row) == shape and all(self._key(r.row) != self._key(new.row) for r in batch)

    def _update_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        status = self.table.batch_update(rows, if_not_exists="ignore", return_rows=True)
        by_key = {self._key(r): r for r in (status.rows or [])}
        return [by_key.get(self._key(r)) for r in rows]


_writers: dict[str, TableWriter] = {}
_writers_lock = threading.Lock()


def writer_for(table_id: str, table: pxt.Table, primary_key: list[str]) -> TableWriter:
    with _writers_lock:
        writer = _writers.get(table_id)
        if writer is None:
            writer = _writers[table_id] = TableWriter(table, primary_key)
        return writer
