"""Paged query routes (`page_size = N` on a multi-row query route).

The request takes `limit` (1..N, default N) and `cursor` besides the query's parameters; the answer is
`{"rows": [...], "next_cursor": "<opaque>" | null}`. A page is cut by Pixeltable (`Query.limit(n + 1, offset=...)`:
the extra row only tells whether a next page exists), never by collecting the whole result.

A cursor is the offset of the next page and a digest of the query's arguments, signed with Django's signing
(SECRET_KEY, salted per route): a client cannot move it, forge it, or use it with other arguments or on another
route, and each of those is a 422 at `cursor`, as a bad field is. It holds no state on the server, so any worker
or node of the service reads it (all of them share SECRET_KEY), and it outlives restarts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pydantic
from django.core import signing

from pxtserve import schemas
from pxtserve.errors import RouteDefinitionError

# the request fields paging adds: a query parameter of the same name would be ambiguous
PAGE_FIELDS = ("limit", "cursor")


@dataclass(frozen=True)
class Paging:
    """A paged route's page size, the query parameters its cursors are bound to, and the salt they are signed with."""

    page_size: int
    params: tuple[str, ...]
    salt: str

    @classmethod
    def of(cls, page_size: int, params: list[str], *, route: str) -> Paging:
        clash = [name for name in PAGE_FIELDS if name in params]
        if clash:
            raise RouteDefinitionError(
                f"page_size adds the request fields limit and cursor, but the query has a parameter "
                f"{clash[0]!r}; leave it out of inputs or rename it",
                field="page_size",
            )
        return cls(page_size, tuple(params), salt=f"pxtserve.paging:{route}")

    def request_model(self, name: str, fields: dict[str, tuple[Any, Any]]) -> type[pydantic.BaseModel]:
        """The query's request fields, then `limit` and `cursor` (last: its check reads the others)."""
        paging = self

        def check_cursor(value: str | None, info: pydantic.ValidationInfo) -> str | None:
            # a parameter that failed its own check is reported already; the cursor cannot be judged without it
            if value is not None and all(name in info.data for name in paging.params):
                paging.offset_of(value, info.data)
            return value

        limit = pydantic.Field(self.page_size, ge=1, le=self.page_size, description="rows in the page")
        cursor = pydantic.Field(None, description="the previous page's next_cursor; none: the first page")
        return pydantic.create_model(  # type: ignore[call-overload, no-any-return]
            name,
            __base__=schemas.RequestSchema,
            __validators__={"check_cursor": pydantic.field_validator("cursor")(check_cursor)},
            **fields,
            limit=(int, limit),
            cursor=(str | None, cursor),
        )

    @staticmethod
    def response_model(name: str, item: Any) -> type[pydantic.BaseModel]:
        return pydantic.create_model(  # type: ignore[call-overload, no-any-return]
            name,
            __base__=schemas.ResponseSchema,
            rows=(list[item], pydantic.Field(description="the page's rows")),
            next_cursor=(str | None, pydantic.Field(description="send as cursor for the next page; null: the last")),
        )

    def offset_of(self, cursor: str | None, inputs: dict[str, Any]) -> int:
        """The offset a cursor points at (0 for none); ValueError when it is not one this route made for `inputs`."""
        if cursor is None:
            return 0
        try:
            token = signing.loads(cursor, salt=self.salt)
        except signing.BadSignature:
            raise ValueError("not a cursor of this route (altered, or made elsewhere)") from None
        offset = token.get("o") if isinstance(token, dict) else None
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError("not a cursor of this route")
        if token.get("d") != self._digest(inputs):
            raise ValueError("the cursor belongs to a request with other query arguments")
        return offset

    def cursor(self, offset: int, inputs: dict[str, Any]) -> str:
        return signing.dumps({"o": offset, "d": self._digest(inputs)}, salt=self.salt)

    def _digest(self, inputs: dict[str, Any]) -> str:
        # validated values (datetimes and all): what both the request check and the answer see
        args = {name: inputs.get(name) for name in self.params}
        text = json.dumps(args, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]
