"""Every use of Pixeltable's private API, in one place, each with why no public way exists.

Everything else in pxtserve uses Pixeltable's public API only. When Pixeltable grows a
public way for one of these, this is the only module to change.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pixeltable as pxt
from pixeltable import type_system as ts


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


def run_query_template(function: Any, args: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The rows of a @pxt.query function's template run with bound arguments, media as file URLs.

    Calling the function gives an expression, not rows; Query._collect is the only way
    to run its template with arguments (media_as_urls yields file URLs instead of
    decoded images).
    """
    return function.template_query._collect(args=args, media_as_urls=True)


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
    """Rows `offset` to `offset + count` of what `run_query_template` gives, cut by the database.

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
