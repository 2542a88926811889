"""The route kinds: each kind's declaration, by the name TOML's `type` and the CLI's target give it."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pxtserve.routes.compute import ComputeRoute
from pxtserve.routes.delete import DeleteRoute
from pxtserve.routes.insert import InsertRoute
from pxtserve.routes.query import QueryRoute
from pxtserve.routes.spec import RouteSpec
from pxtserve.routes.update import UpdateRoute

ROUTE_KINDS: dict[str, type[RouteSpec]] = {
    spec.kind: spec for spec in (InsertRoute, UpdateRoute, DeleteRoute, QueryRoute, ComputeRoute)
}

# a route of any kind, told apart by its `type`
RouteConfig = Annotated[
    InsertRoute | UpdateRoute | DeleteRoute | QueryRoute | ComputeRoute, Field(discriminator="type")
]
