"""Readable, unique operationIds for the routes of PixeltableRouters (what generated clients name functions after)."""

from __future__ import annotations

import re
import threading
import weakref
from typing import Any

from ninja.operation import AsyncOperation
from ninja.operation import Operation as NinjaOperation

# --- readable, unique operationIds ----------------------------------------------------------------
#
# A route's operationId is `{kind}_{path}` (insert_notes, query_notes_lookup): generated clients name
# their functions after it. It must be unique within an OpenAPI document, and Ninja does not see to
# that: a duplicate only prints a warning when the document is built, and is published twice. So
# the later of two equal ids gets `_2`, `_3`, ... in registration order, first within a router (when
# the route is added), then within the NinjaAPI it is mounted on (when Ninja binds the operation to
# it, mount order), so that the ids are stable across restarts. The API's own, non-pxtserve
# operations are not consulted: Ninja offers no public way to list them.

_NOT_ALPHANUMERIC = re.compile(r"[^A-Za-z0-9]+")
# the ids documented so far in each NinjaAPI (weak: a test builds many APIs); values hold no API
_api_operation_ids: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
# Ninja binds operations as it first builds an API's URLs, which two threads may do at once
_api_operation_ids_lock = threading.Lock()


def readable_operation_id(kind: str, path: str) -> str:
    """`{kind}_{path}`, every run of characters other than ASCII letters and digits one `_`, trimmed.

    "/notes/delete-by-tag" of a delete route is `delete_notes_delete_by_tag`; "/" is just the kind.
    """
    return _NOT_ALPHANUMERIC.sub("_", f"{kind}_{path}").strip("_")


def free_operation_id(taken: set[str], plain: str, preferred: str) -> str:
    """`preferred` if no earlier operation has it, else the first free of `plain_2`, `plain_3`, ..."""
    candidate, n = preferred, 2
    while candidate in taken:
        candidate, n = f"{plain}_{n}", n + 1
    return candidate


class _ApiUniqueOperationId:
    """Mixed into the Ninja operations of a PixeltableRouter: documented ones claim an id unique in their API.

    Ninja binds an operation to its NinjaAPI by setting its `api` attribute (on a copy per mount
    since Ninja 1.5, `Operation.clone`, which copies only Ninja's own attributes): the first moment
    an operation knows which document it is in. Setting `api` is the only hook there is; an
    `api` property would cost every request an indirection, `__setattr__` costs only the binding.
    """

    include_in_schema: bool
    operation_id: str | None
    # `{kind}_{path}` without any suffix: the stem of the suffixed ids
    pxtserve_plain_id: str

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name != "api" or value is None or not self.include_in_schema:
            return
        claimed_in: weakref.ref[Any] | None = self.__dict__.get("_pxtserve_claimed_in")
        if claimed_in is not None and claimed_in() is value:
            return  # bound to the same API again: its id is already this operation's
        with _api_operation_ids_lock:
            taken = _api_operation_ids.setdefault(value, set())
            unique = free_operation_id(taken, self.pxtserve_plain_id, self.operation_id or self.pxtserve_plain_id)
            taken.add(unique)
        super().__setattr__("operation_id", unique)
        super().__setattr__("_pxtserve_claimed_in", weakref.ref(value))

    def clone(self) -> Any:
        cloned = super().clone()  # type: ignore[misc]
        cloned.pxtserve_plain_id = self.pxtserve_plain_id
        return cloned


class _PxtOperation(_ApiUniqueOperationId, NinjaOperation):
    pass


class _PxtAsyncOperation(_ApiUniqueOperationId, AsyncOperation):
    pass


PXT_OPERATION_CLASSES: dict[type[NinjaOperation], type[NinjaOperation]] = {
    NinjaOperation: _PxtOperation,
    AsyncOperation: _PxtAsyncOperation,
}


def claim_api_unique_id(ninja_operation: NinjaOperation, plain_id: str) -> None:
    """Make a Ninja operation of a PixeltableRouter claim an id unique in every API it is bound to."""
    # Ninja builds its Operation itself (PathView.add_operation), with no way to pass a class;
    # the subclasses only add attribute hooks, so the instance's layout is the same
    ninja_operation.__class__ = PXT_OPERATION_CLASSES[type(ninja_operation)]
    ninja_operation.pxtserve_plain_id = plain_id  # type: ignore[attr-defined]
    if ninja_operation.api is not None:
        # Ninja before 1.5 binds a router's own operations, at mount time, which may come first
        ninja_operation.api = ninja_operation.api
