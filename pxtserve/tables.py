"""What a route needs to know about a Pixeltable table, read through the public API."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pixeltable as pxt
from pixeltable import type_system as ts

from pxtserve import conf
from pxtserve.errors import ApiError, RouteDefinitionError
from pxtserve.pxt_internals import stored_schema_version

SCHEMA_CHANGED_MESSAGE = "table schema changed since the route was registered; please restart the service"


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    col_type: ts.ColumnType
    is_computed: bool
    is_primary_key: bool
    comment: str | None
    # a computed column's expression as Pixeltable displays it (and names it in errors)
    computed_with: str | None = None

    @property
    def is_media(self) -> bool:
        return self.col_type.is_media_type()


class SchemaGuard:
    """Notices that a table's schema changed since a route froze its contract.

    Reading the table's metadata costs a catalog query, too much for every
    request; so it is read at most once per SCHEMA_CHECK_INTERVAL, and
    at once whenever a Pixeltable call fails (a dropped or retyped column
    usually makes it fail), so a changed table still answers 409.
    """

    def __init__(self, table: pxt.Table, schema_version: int) -> None:
        self.table = table
        self.schema_version = schema_version
        self._checked_at = time.monotonic()
        self._lock = threading.Lock()

    def check(self, *, force: bool = False) -> None:
        interval = conf.settings().SCHEMA_CHECK_INTERVAL
        if not force and time.monotonic() - self._checked_at < interval:
            return
        try:
            changed = stored_schema_version(self.table) != self.schema_version
        except pxt.Error as exc:
            if exc.error_code is not pxt.ErrorCode.TABLE_NOT_FOUND:
                raise
            changed = True
        if changed:
            raise ApiError(409, "SCHEMA_CHANGED", SCHEMA_CHANGED_MESSAGE)
        with self._lock:
            self._checked_at = time.monotonic()


@dataclass(frozen=True)
class TableInfo:
    table: pxt.Table
    table_id: str
    path: str  # Pixeltable's own ("dir/table"): what keys and the OpenAPI details use
    # as the route names it ("dir.table" in a service file), for messages: they name what the user wrote
    name: str
    kind: str  # 'table', 'view', 'snapshot'
    columns: dict[str, ColumnInfo]
    primary_key: list[str]
    schema_version: int
    guard: SchemaGuard

    @classmethod
    def of(cls, table: pxt.Table | str) -> TableInfo:
        tbl = resolve_table(table)
        md = tbl.get_metadata()
        columns = {
            name: ColumnInfo(
                name=name,
                col_type=tbl[name].col_type,
                is_computed=bool(col_md["is_computed"]),
                is_primary_key=bool(col_md["is_primary_key"]),
                comment=col_md.get("comment"),
                computed_with=col_md.get("computed_with"),
            )
            for name, col_md in md["columns"].items()
        }
        return cls(
            table=tbl,
            table_id=str(md["id"]),
            guard=SchemaGuard(tbl, int(md["schema_version"])),
            path=md["path"],
            name=table if isinstance(table, str) else md["path"],
            kind=md["kind"],
            columns=columns,
            primary_key=list(md.get("primary_key") or []),
            schema_version=int(md["schema_version"]),
        )

    @contextmanager
    def schema_checked(self) -> Iterator[None]:
        """Run a Pixeltable call on this table (every route kind's, written or not); if it fails, tell a changed
        schema (409) from any other error, and name the computed column that failed, if one did."""
        self.guard.check()
        try:
            yield
        except pxt.Error as exc:
            self.guard.check(force=True)
            named = self.naming_the_column(exc)
            if named is exc:
                raise
            raise named from exc.__cause__

    def naming_the_column(self, exc: pxt.Error) -> pxt.Error:
        """`exc` with the name of the computed column it is about, if it is about one.

        Pixeltable names a raising computed column by its expression ("the expression checked_inverse(x)
        encountered exception ..."), which the client never wrote; the column's name is what it knows. The
        error keeps its class, code and status (400 UNSUPPORTED_OPERATION for a column that raised), so
        every route kind answers it alike.
        """
        message = exc.message  # without `detail` (a stack trace), which error bodies leave out too
        names = [n for n, c in self.columns.items() if c.computed_with and f"expression {c.computed_with} " in message]
        if not names:
            return exc
        which = " / ".join(repr(n) for n in names)
        # the round trip through the wire form keeps what every subclass carries (a provider, a retry hint, the detail)
        return pxt.Error.from_dict(
            {**exc.to_dict(with_detail=True), "message": f"computed column {which} failed: {message}"}
        )


def resolve_table(table: pxt.Table | str) -> pxt.Table:
    if isinstance(table, pxt.Table):
        return table
    if not isinstance(table, str) or not table:
        raise RouteDefinitionError(f"expected a table path or a pxt.Table, got {table!r}", field="table")
    try:
        return pxt.get_table(table.replace("/", "."))
    except pxt.Error as exc:
        raise RouteDefinitionError(f"table {table!r} cannot be opened: {exc}", field="table") from exc


def lineage(table: pxt.Table) -> list[dict[str, Any]]:
    """The metadata of a table and of each of its bases in turn, up to the root of its hierarchy."""
    chain: list[dict[str, Any]] = [dict(table.get_metadata())]
    while chain[-1].get("base"):
        chain.append(dict(pxt.get_table(chain[-1]["base"]).get_metadata()))
    return chain


def where_all_equal(tbl: pxt.Table, values: dict[str, Any]) -> Any:
    """The AND of `column == value` over `values`."""
    predicate = None
    for name, value in values.items():
        term = tbl[name] == value
        predicate = term if predicate is None else predicate & term
    return predicate


def where_any(tbl: pxt.Table, matches: Sequence[dict[str, Any]]) -> Any:
    """The OR over `matches` of each one's AND-ed equalities."""
    predicate = None
    for match in matches:
        term = where_all_equal(tbl, match)
        predicate = term if predicate is None else predicate | term
    return predicate
