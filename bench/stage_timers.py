"""Timers wrapped around named functions: the stages of bench/profile_reads.py (inclusive wall-clock per stage)."""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

# (label, depth, "module:qualname", kind): kind is "call" (a function), "gen" (a generator or iterator it returns is
# timed while it is consumed), "ctx" (a @contextmanager: its set-up and tear-down, not its body) or "async".
STAGES: list[tuple[str, int, str, str]] = [
    ("pxtserve: whole request (ASGI app)", 0, "pxtserve.request_id:RequestIdAsgi.__call__", "async"),
    ("Django handler + middleware chain", 1, "django.core.handlers.base:BaseHandler.get_response_async", "async"),
    # "a|b": the first of them this checkout has (pxtserve's own once it overrides the library's)
    (
        "URL resolution",
        2,
        "pxtserve.asgi:ApiHandler.resolve_request|django.core.handlers.base:BaseHandler.resolve_request",
        "call",
    ),
    (
        "Ninja operation (validation + view)",
        2,
        "pxtserve.route_operation:RouteRun.run|ninja.operation:AsyncOperation.run",
        "async",
    ),
    ("Ninja parameter validation", 3, "ninja.operation:Operation._get_values", "call"),
    ("thread hop + Pixeltable call", 3, "pxtserve.views:run_in_pool_with_timeout", "async"),
    ("operation.execute (pool thread)", 4, "pxtserve.routes.operation:RowsOperation.execute", "call"),
    ("rows rendered", 5, "pxtserve.routes.operation:render_row", "call"),
    ("response validation (pydantic)", 3, "pydantic.type_adapter:TypeAdapter.validate_python", "call"),
    ("response JSON (pydantic)", 3, "pydantic.type_adapter:TypeAdapter.dump_json", "call"),
    ("Pixeltable: Query._collect", 0, "pixeltable._query:Query._collect", "call"),
    ("Pixeltable: pxtserve's PreparedRead.rows", 0, "pxtserve.pxt_internals:PreparedRead.rows", "call"),
    ("catalog transaction set-up/tear-down", 1, "pixeltable.catalog.catalog:Catalog.begin_xact", "ctx"),
    ("connection checkout (pre-ping)", 2, "sqlalchemy.engine.base:Engine.connect", "call"),
    ("metadata version checks", 2, "pixeltable.catalog.catalog:Catalog._acquire_locks", "call"),
    ("commit", 2, "sqlalchemy.engine.base:Transaction.commit", "call"),
    ("plan lookup (cached per thread)", 1, "pixeltable._query:Query._ensure_plan", "call"),
    ("planning (cache miss)", 2, "pixeltable._query:Query._create_query_plan", "call"),
    ("plan execution", 1, "pixeltable.exec.exec_plan:ExecPlan.exec", "gen"),
    ("SQL statements (all, incl. metadata)", 1, "sqlalchemy.engine.base:Connection.execute", "call"),
    ("SQL compilation (cached)", 2, "sqlalchemy.sql.elements:ClauseElement._compile_w_cache", "call"),
    ("DB round trip (psycopg execute)", 2, "psycopg.cursor:Cursor.execute", "call"),
]


class StageTimers:
    """Inclusive wall-clock time and call count per stage label, from wrappers patched onto the named functions
    (a function this checkout does not have is skipped)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[Callable[[], None]] = []
        self._active: set[str] = set()  # a recursive call is not counted twice

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def install(self, stages: list[tuple[str, int, str, str]]) -> None:
        for label, _, targets, kind in stages:
            found = next(filter(None, map(_owner_of, targets.split("|"))), None)
            if found is None:
                continue  # not in this checkout (the code before a change): its row shows "-"
            owner, attr = found
            original = inspect.getattr_static(owner, attr)
            setattr(owner, attr, self._wrap(label, original, kind))
            self._undo.append(functools.partial(setattr, owner, attr, original))

    def uninstall(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def _add(self, label: str, seconds: float) -> None:
        self.seconds[label] += seconds
        self.calls[label] += 1

    def _wrap(self, label: str, fn: Any, kind: str) -> Any:
        timers = self
        if kind == "async":

            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                began = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    timers._add(label, time.perf_counter() - began)

            return timed_async
        if kind == "ctx":
            generator_fn = fn.__wrapped__

            @contextlib.contextmanager
            @functools.wraps(generator_fn)
            def timed_ctx(*args: Any, **kwargs: Any) -> Iterator[Any]:
                gen = generator_fn(*args, **kwargs)
                began = time.perf_counter()
                value = next(gen)
                timers._add(label, time.perf_counter() - began)
                try:
                    yield value
                except BaseException as exc:
                    began = time.perf_counter()
                    try:
                        gen.throw(exc)
                    except StopIteration:
                        return
                    finally:
                        timers.seconds[label] += time.perf_counter() - began
                    raise
                began = time.perf_counter()
                with contextlib.suppress(StopIteration):
                    next(gen)
                timers.seconds[label] += time.perf_counter() - began

            return timed_ctx
        if kind == "gen":

            @functools.wraps(fn)
            def timed_gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
                it = iter(fn(*args, **kwargs))
                total = 0.0
                try:
                    while True:
                        began = time.perf_counter()
                        try:
                            item = next(it)
                        except StopIteration:
                            return
                        finally:
                            total += time.perf_counter() - began
                        yield item
                finally:
                    timers._add(label, total)

            return timed_gen

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if label in timers._active:
                return fn(*args, **kwargs)
            timers._active.add(label)
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timers._active.discard(label)
                timers._add(label, time.perf_counter() - began)

        return timed


def _owner_of(target: str) -> tuple[Any, str] | None:
    """(the object holding it, its attribute name) for "module:Qual.name", or None when this checkout lacks it."""
    module_name, _, qualname = target.partition(":")
    try:
        owner: Any = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return None
    *path, attr = qualname.split(".")
    for part in path:
        owner = getattr(owner, part, None)
    return None if owner is None or not hasattr(owner, attr) else (owner, attr)
