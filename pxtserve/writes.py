"""Write coordination: each table has one writer thread in the process; requests queue for
it instead of colliding on Pixeltable's table lock, and inserts (and updates) that wait
while a write runs go in together as one call (group commit).

Pixeltable writers take a table's lock with NOWAIT and, on conflict, sleep 0.1-0.5 s
before retrying; sixteen concurrent writers to one table spend most of their time asleep.
Serializing them is not enough either: a write from a thread whose Pixeltable runtime has
not seen the table's latest version costs more (figures: commit 9115349). So one thread
writes each table:
it takes every request queued meanwhile and writes them with one
`insert([...], return_rows=True)` (or `batch_update`). Deletes by primary key batch too:
one read finds which of the keys exist, one `delete` removes them, and each request is
told whether its row was there (Pixeltable's delete only counts the rows of the whole
call). A single client never waits for a batch: its batch is just itself. A request of a `batch = true` route
(pxtserve.routes.batch) carries its own rows and gets a call of its own, never merged (see `_joins`).

Each request still gets exactly its own row and its own error: a batch that fails is
retried row by row, so only the guilty request sees the error. Coordination is per
process; across processes (or machines) Pixeltable's database lock still guards
correctness.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import pixeltable as pxt

from pxtserve import conf, metrics, tracing
from pxtserve.pxt_internals import as_pixeltable_error
from pxtserve.tables import TableInfo, where_all_equal, where_any

_logger = logging.getLogger(__name__)


class _Request:
    __slots__ = ("batch_size", "done", "error", "kind", "payload", "result")

    def __init__(self, kind: str, payload: Any) -> None:
        self.kind = kind
        self.payload = payload
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        # the rows of the Pixeltable call that wrote it (traced: pxtserve.tracing)
        self.batch_size = 0

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()

    def outcome(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


class TableWriter:
    """Every write this process makes to one table goes through its thread."""

    def __init__(self, table: pxt.Table, primary_key: list[str], *, name: str = "") -> None:
        self.table = table
        self.primary_key = primary_key
        self.name = name  # the table's path, for the log
        self._queue: list[_Request] = []
        self._wakeup = threading.Condition()
        # cleared, the writer takes no new batch (the tests use it to let requests queue up)
        self._gate = threading.Event()
        self._gate.set()
        self._thread = threading.Thread(target=self._loop, name="pxtserve-writer", daemon=True)
        self._thread.start()

    def insert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Insert one row; the stored row, computed columns included."""
        return self._submit(_Request("insert", row))

    def insert_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert a batch request's rows in one call of their own, all or nothing (see _joins); the stored rows."""
        return self._submit(_Request("insert_rows", rows))

    def update(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """Update the row with `row`'s primary key; the updated row, or None when no row has that key."""
        return self._submit(_Request("update", row))

    def delete(self, match: dict[str, Any]) -> int:
        """Delete the rows equal to `match` on its columns; the number of rows deleted."""
        return self._submit(_Request("delete", match))

    def _submit(self, request: _Request) -> Any:
        with self._wakeup:
            self._queue.append(request)
            self._wakeup.notify()
            metrics.set_write_queue(self.name, len(self._queue))
        if tracing.enabled:
            return tracing.wait_for_write(request, self.name)
        return request.outcome()

    # --- the writer thread -------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wakeup:
                while not (self._queue and self._gate.is_set()):
                    # idle: sleep until a request comes; held: look again shortly
                    self._wakeup.wait(None if self._gate.is_set() else 0.01)
                batch = self._take()
                metrics.set_write_queue(self.name, len(self._queue))
            self._run(batch)

    def _take(self) -> list[_Request]:
        """The oldest request and every queued one that can go in the same call with it."""
        limit = conf.settings().WRITE_BATCH_MAX
        head = self._queue[0]
        batch: list[_Request] = []
        rest: list[_Request] = []
        for request in self._queue:
            joins = request is head or (
                request.kind == head.kind and len(batch) < limit and self._joins(batch, request)
            )
            (batch if joins else rest).append(request)
        self._queue = rest
        return batch

    def _joins(self, batch: list[_Request], new: _Request) -> bool:
        if new.kind == "insert_rows":
            # a batch request already fills a call, and alone its failure is its own: merged, a neighbour's bad
            # row would fail it too and force a second call (atomicity would hold, the retry would cost)
            return False
        if new.kind == "insert":
            return True
        shape = set(batch[0].payload)
        if new.kind == "delete" and shape != set(self.primary_key):
            return False  # a delete on other columns may match many rows: its count needs a call of its own
        # batch_update takes rows of one shape, and a key twice in one call would be ambiguous
        return set(new.payload) == shape and all(self._key(r.payload) != self._key(new.payload) for r in batch)

    def _run(self, batch: list[_Request]) -> None:
        if tracing.enabled:
            for request in batch:
                request.batch_size = _call_rows(batch[0].kind, [r.payload for r in batch])
        try:
            results = self._write(batch[0].kind, [r.payload for r in batch])
        except BaseException as raised:  # noqa: BLE001 - every waiting request must get an outcome
            exc = as_pixeltable_error(raised)
            if len(batch) == 1 or not isinstance(exc, pxt.Error):
                for request in batch:
                    request.finish(error=exc)
                return
            # one bad row fails the whole call: write them one by one so only its request gets the error
            for request in batch:
                self._run([request])
            return
        for request, result in zip(batch, results, strict=True):
            request.finish(result=result)

    def _write(self, kind: str, payloads: list[Any]) -> Sequence[Any]:
        metrics.observe_write(self.name, "insert" if kind == "insert_rows" else kind, _call_rows(kind, payloads))
        if kind == "insert":
            return self._insert(payloads)
        if kind == "insert_rows":
            return [self._insert(payloads[0])]  # one batch request: one call, one transaction
        if kind == "update":
            status = self.table.batch_update(payloads, if_not_exists="ignore", return_rows=True)
            by_key = {self._key(r): r for r in (status.rows or [])}
            return [by_key.get(self._key(r)) for r in payloads]
        if len(payloads) == 1:
            return [self.table.delete(where=where_all_equal(self.table, payloads[0])).num_rows]
        return self._delete_keys(payloads)

    def _insert(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        status = self.table.insert(rows, return_rows=True)
        stored = status.rows or []
        if len(stored) != len(rows):
            raise RuntimeError(f"insert of {len(rows)} rows returned {len(stored)} rows")
        return stored

    def _delete_keys(self, payloads: list[dict[str, Any]]) -> list[int]:
        """Delete rows by distinct primary keys in one call; 1 or 0 for each key."""
        table = self.table
        match = where_any(table, payloads)
        found = table.where(match).select(*[table[k] for k in self.primary_key]).collect()
        present = {self._key(row) for row in found}
        if present:
            deleted = table.delete(where=where_any(table, [dict(zip(self.primary_key, k)) for k in present])).num_rows
            if deleted != len(present):
                # only another process can delete these rows between the read and the delete
                # (this thread is the process's only writer of the table): the counts may be off by that
                _logger.warning(
                    "delete of %d keys from %s: %d found, %d deleted (a concurrent delete from another process)",
                    len(payloads),
                    self.name,
                    len(present),
                    deleted,
                )
        return [1 if self._key(p) in present else 0 for p in payloads]

    def _key(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[k] for k in self.primary_key)


def _call_rows(kind: str, payloads: list[Any]) -> int:
    """The rows of one writer call: a batch request's own rows, else one per request."""
    return len(payloads[0]) if kind == "insert_rows" else len(payloads)


_writers: dict[str, TableWriter] = {}
_writers_lock = threading.Lock()


def writer_for(info: TableInfo) -> TableWriter:
    """The process's writer of the table."""
    with _writers_lock:
        writer = _writers.get(info.table_id)
        if writer is None:
            writer = _writers[info.table_id] = TableWriter(info.table, info.primary_key, name=info.path)
        return writer
