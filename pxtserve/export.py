"""Export of route response rows to an external SQL table (the `export_sql` route option).

The Pixeltable write always happens first; the lead router calls `SqlExporter.export_row()` only after it committed.
Registration (`SqlExporter.__init__`) validates the live target once, so request-time failures are limited to
runtime problems (target went away, constraint violations, no row matched an update).
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any, Literal

import pydantic
import sqlalchemy as sa
from sqlalchemy import types as sat
from sqlalchemy.dialects import mysql as sa_mysql
from sqlalchemy.dialects import postgresql as sa_pg
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlalchemy.engine import make_url

from pxtserve import metrics, tracing
from pxtserve.errors import ExportConfigError, ExportWriteError, RouteDefinitionError
from pxtserve.redaction import redact_text, redact_url

if TYPE_CHECKING:
    from pixeltable.type_system import ColumnType

_logger = logging.getLogger("pxtserve.export")

# dialect names (URL backend names) for which we know how to emit an upsert
_MERGE_DIALECTS = frozenset({"postgresql", "mysql", "mariadb", "sqlite"})


class SqlExport(pydantic.BaseModel):
    """The `export_sql` option of an insert/update route."""

    # hide_input_in_errors: a ValidationError would otherwise echo db_connect, password included
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # repr=False: never leak the password via repr()/logging of the spec
    db_connect: str = pydantic.Field(repr=False, description="SQLAlchemy URL of the target database (${VAR} expanded)")
    table: str = pydantic.Field(min_length=1, description="the target table")
    db_schema: str | None = pydantic.Field(default=None, min_length=1, description="the target table's schema")
    method: Literal["insert", "update", "merge"] = pydantic.Field("insert", description="how each row is written")

    @pydantic.field_validator("db_connect")
    @classmethod
    def _check_url(cls, v: str) -> str:
        try:
            make_url(v)
        except (sa.exc.ArgumentError, ValueError):  # what make_url raises for malformed URLs
            # deliberately not chaining/including the SQLAlchemy message: it quotes the whole URL
            raise ValueError(
                "db_connect is not a valid SQLAlchemy URL (dialect+driver://user:password@host/db)"
            ) from None
        return v


def describe_export(spec: SqlExport | None) -> dict[str, Any] | None:
    """An export_sql option as `serve --dry-run` shows it: the password redacted."""
    if spec is None:
        return None
    return {**spec.model_dump(), "db_connect": redact_url(spec.db_connect)}


def build_exporter(spec: SqlExport | None, columns: dict[str, ColumnType], route: str) -> SqlExporter | None:
    """Validate an export target against the live database once, at registration."""
    if spec is None:
        return None
    try:
        return SqlExporter(spec, columns, route=route)
    except ExportConfigError as exc:
        raise RouteDefinitionError(str(exc), field="export_sql") from exc


# --- engine cache ---------------------------------------------------------------------------------------------------

_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def get_engine(db_connect: str) -> sa.Engine:
    """One engine (and therefore one connection pool) per distinct db_connect, shared by all routes."""
    with _engines_lock:
        engine = _engines.get(db_connect)
        if engine is None:
            url = make_url(db_connect)
            connect_args: dict[str, Any] = {}
            # libpq waits forever by default; a dead target should fail registration/requests, not hang them
            if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
                connect_args["connect_timeout"] = 10
            # pool_pre_ping: a target that went away and came back works again without restarting the server
            engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
            _engines[db_connect] = engine
        return engine


def dispose_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _error_summary(exc: BaseException, db_connect: str) -> str:
    """One-line description of a DB error: the DBAPI message only (SQLAlchemy's str() adds SQL and parameters)."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    summary = f"{type(orig).__name__}: {'; '.join(lines)}"
    if len(summary) > 500:
        summary = summary[:497] + "..."
    return redact_text(summary, db_connect)


# --- type compatibility ---------------------------------------------------------------------------------------------


def _is_string(t: sat.TypeEngine) -> bool:
    return isinstance(t, sat.String)  # covers Text, VARCHAR, CHAR, Enum, dialect text types


def _type_problem(col_type: ColumnType, target: sat.TypeEngine, dialect: str) -> str | None:
    """Return why a Pixeltable output column can't be written into a target column of type `target`, or None."""
    if col_type.is_media_type() or col_type.is_string_type():
        ok, needs = _is_string(target), "a string type (media columns are exported as URL strings)"
    elif col_type.is_int_type():
        ok, needs = isinstance(target, (sat.Integer, sat.Numeric, sat.Float)), "an integer or numeric type"
    elif col_type.is_float_type():
        ok, needs = isinstance(target, (sat.Float, sat.Numeric)), "a float/double/real/numeric type"
    elif col_type.is_bool_type():
        # MySQL/MariaDB BOOLEAN is TINYINT(1) and reflects as an integer; SQLite commonly uses INTEGER 0/1 too
        ok = isinstance(target, sat.Boolean) or (
            dialect in ("mysql", "mariadb", "sqlite") and isinstance(target, sat.Integer)
        )
        needs = "a boolean type"
    elif col_type.is_timestamp_type():
        ok, needs = isinstance(target, sat.DateTime), "a datetime/timestamp type"
    elif col_type.is_date_type():
        ok, needs = isinstance(target, sat.Date), "a date type"
    elif col_type.is_json_type() or col_type.is_array_type():
        ok, needs = isinstance(target, sat.JSON) or _is_string(target), "a JSON type or a string type"
    elif col_type.is_uuid_type():
        ok, needs = isinstance(target, sat.Uuid) or _is_string(target), "a UUID type or a string type"
    else:
        return f"Pixeltable type {col_type} is not supported by export_sql"
    return None if ok else f"has type {target}, incompatible with Pixeltable type {col_type} (needs {needs})"


def _convert(value: Any, col_type: ColumnType, target: sat.TypeEngine) -> Any:
    """Adapt a JSON-rendered response value to what the target column's SQLAlchemy type binds."""
    if value is None:
        # JSON-typed columns would otherwise store the JSON literal 'null' instead of SQL NULL
        return sa.null() if isinstance(target, sat.JSON) else None
    if isinstance(target, sat.JSON):
        return value
    if _is_string(target):
        # JSON/array values in a text column are always stored serialized, so the column holds valid JSON
        return json.dumps(value) if col_type.is_json_type() or col_type.is_array_type() else str(value)
    if isinstance(target, sat.DateTime):
        # response bodies render timestamps as ISO strings; the DB drivers want datetime objects
        stamp = datetime.datetime.fromisoformat(value) if isinstance(value, str) else value
        if isinstance(stamp, datetime.datetime) and stamp.tzinfo is not None and not target.timezone:
            # drivers disagree on aware values for naive columns (PG converts to session tz, MySQL/SQLite drop the
            # offset); store UTC wall-clock time everywhere instead
            stamp = stamp.astimezone(datetime.UTC).replace(tzinfo=None)
        return stamp
    if isinstance(value, str):
        if isinstance(target, sat.Date):
            return datetime.date.fromisoformat(value)
        if isinstance(target, sat.Uuid) and target.as_uuid:
            return uuid.UUID(value)
    return value


# --- exporter -------------------------------------------------------------------------------------------------------


class SqlExporter:
    """Validates an export_sql target once at registration and writes response rows into it."""

    def __init__(self, spec: SqlExport, columns: dict[str, ColumnType], *, route: str) -> None:
        self.spec = spec
        self.route = route
        self.columns = dict(columns)
        self.target_name = f"{spec.db_schema}.{spec.table}" if spec.db_schema else spec.table
        self.redacted_url = redact_url(spec.db_connect)
        self.dialect = make_url(spec.db_connect).get_backend_name()

        # checked before connecting: no point in reaching the database for a config we can't support anyway
        if spec.method == "merge" and self.dialect not in _MERGE_DIALECTS:
            raise self._config_error(
                f"method 'merge' is not supported for dialect '{self.dialect}' "
                f"(supported: {', '.join(sorted(_MERGE_DIALECTS))})"
            )

        try:
            self.engine = get_engine(spec.db_connect)
        except (sa.exc.ArgumentError, ImportError) as exc:  # unknown dialect or its DBAPI driver isn't installed
            raise self._config_error(
                f"cannot create an engine for {self.redacted_url}: {_error_summary(exc, spec.db_connect)}"
            ) from None
        self.table = self._reflect()
        self.pk_names = [c.name for c in self.table.primary_key.columns]
        self._validate()

    def _config_error(self, problem: str) -> ExportConfigError:
        return ExportConfigError(
            redact_text(f"export_sql target table '{self.target_name}': {problem}", self.spec.db_connect)
        )

    def _reflect(self) -> sa.Table:
        try:
            with self.engine.connect() as conn:
                if not sa.inspect(conn).has_table(self.spec.table, schema=self.spec.db_schema):
                    raise ExportConfigError(
                        f"export_sql target table '{self.target_name}' does not exist in {self.redacted_url}"
                    )
                return sa.Table(self.spec.table, sa.MetaData(), schema=self.spec.db_schema, autoload_with=conn)
        except sa.exc.SQLAlchemyError as exc:
            raise ExportConfigError(
                f"export_sql target table '{self.target_name}': cannot connect to or inspect {self.redacted_url}: "
                f"{_error_summary(exc, self.spec.db_connect)}"
            ) from None  # not chained: the original exception text may carry connection details

    def _has_generated_value(self, col: sa.Column) -> bool:
        """True if the database fills in `col` when an INSERT omits it."""
        if col.server_default is not None or col.identity is not None or col.computed is not None:
            return True
        if not col.primary_key or len(self.table.primary_key.columns) != 1:
            return False
        if self.dialect in ("mysql", "mariadb"):
            return col.autoincrement is True  # reflected from AUTO_INCREMENT
        # SQLite: a single INTEGER PRIMARY KEY is an alias of the rowid and is assigned automatically
        return self.dialect == "sqlite" and isinstance(col.type, sat.INTEGER)

    def _validate(self) -> None:
        problems: list[str] = []
        for name, col_type in self.columns.items():
            if name not in self.table.c:
                problems.append(f"column '{name}' does not exist in the target table")
                continue
            problem = _type_problem(col_type, self.table.c[name].type, self.dialect)
            if problem is not None:
                problems.append(f"column '{name}' {problem}")
        for col in self.table.columns:
            if col.name not in self.columns and not col.nullable and not self._has_generated_value(col):
                problems.append(
                    f"column '{col.name}' is NOT NULL without a default but is not among the exported columns"
                )
        if self.spec.method in ("update", "merge"):
            if not self.pk_names:
                problems.append(f"method '{self.spec.method}' requires the target table to declare a primary key")
            else:
                missing_pk = [pk for pk in self.pk_names if pk not in self.columns]
                if missing_pk:
                    problems.append(
                        f"method '{self.spec.method}' requires the exported columns to include all primary-key "
                        f"columns; missing: {', '.join(missing_pk)}"
                    )
                if not any(name not in self.pk_names for name in self.columns):
                    problems.append(
                        f"method '{self.spec.method}' requires at least one exported non-primary-key column to set"
                    )
        if problems:
            raise self._config_error("; ".join(problems))

    def _statement(self, values: dict[str, Any]) -> sa.Executable:
        method, table = self.spec.method, self.table
        if method == "insert":
            return sa.insert(table).values(values)
        non_pk = [name for name in values if name not in self.pk_names]
        if method == "update":
            where = [table.c[pk] == values[pk] for pk in self.pk_names]
            return sa.update(table).where(*where).values({name: values[name] for name in non_pk})
        if self.dialect == "postgresql":
            pg_stmt = sa_pg.insert(table).values(values)
            return pg_stmt.on_conflict_do_update(
                index_elements=self.pk_names, set_={name: pg_stmt.excluded[name] for name in non_pk}
            )
        if self.dialect == "sqlite":
            lite_stmt = sa_sqlite.insert(table).values(values)
            return lite_stmt.on_conflict_do_update(
                index_elements=self.pk_names, set_={name: lite_stmt.excluded[name] for name in non_pk}
            )
        # mysql/mariadb: ON DUPLICATE KEY UPDATE also fires on conflicts of other UNIQUE keys (MySQL semantics)
        my_stmt = sa_mysql.insert(table).values(values)
        return my_stmt.on_duplicate_key_update({name: my_stmt.inserted[name] for name in non_pk})

    def _write_error(self, failure: str, detail: str) -> ExportWriteError:
        """The client's error says which target failed and how (`failure`); the log line (with the request's
        id) adds `detail`: the database's message, which may quote the row's values, constraints or SQL."""
        message = f"export_sql to '{self.target_name}' failed: {failure}"
        detail = redact_text(detail, self.spec.db_connect)
        _logger.error("route %s: %s: %s (target %s)", self.route, message, detail, self.redacted_url)
        metrics.export_failed(self.target_name)  # labelled by the table, never the URL (it may hold a password)
        return ExportWriteError(message)

    def export_row(self, row: dict[str, Any]) -> None:
        if tracing.enabled:
            with tracing.export_span(self.dialect, self.target_name, self.spec.method):
                return self._export_row(row)
        self._export_row(row)

    def _export_row(self, row: dict[str, Any]) -> None:
        missing = [name for name in self.columns if name not in row]
        if missing:
            raise self._write_error(_MISSING_COLUMNS, f"missing: {', '.join(missing)}")
        try:
            values = {
                name: _convert(row[name], col_type, self.table.c[name].type) for name, col_type in self.columns.items()
            }
        except ValueError as exc:
            raise self._write_error(_UNFIT_VALUE, str(exc)) from exc
        try:
            conn = self.engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            raise self._write_error(_UNREACHABLE, _error_summary(exc, self.spec.db_connect)) from exc
        try:
            with conn, conn.begin():
                result = conn.execute(self._statement(values))
                # no-match check inside the transaction; MySQL dialects count matched (not changed) rows
                if self.spec.method == "update" and result.rowcount == 0:
                    key = ", ".join(f"{pk}={row[pk]!r}" for pk in self.pk_names)
                    raise self._write_error(_NO_ROW, f"primary key ({key})")
        except sa.exc.SQLAlchemyError as exc:
            raise self._write_error(_failure_of(exc), _error_summary(exc, self.spec.db_connect)) from exc


# how an export failed, as its 500 says (the details are logged)
_MISSING_COLUMNS = "the response row lacks exported columns"
_UNFIT_VALUE = "a value does not fit its target column"
_UNREACHABLE = "the target database is unreachable"
_NO_ROW = "no target row matched the row's primary key"
_CONSTRAINT = "a constraint of the target table refused the row"
_REFUSED = "the target database refused the row"


def _failure_of(exc: sa.exc.SQLAlchemyError) -> str:
    if isinstance(exc, sa.exc.IntegrityError):
        return _CONSTRAINT
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return _UNREACHABLE
    return _REFUSED
