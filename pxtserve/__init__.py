"""pxtserve: serve Pixeltable tables and queries from Django through Django Ninja.

The public API is re-exported here, imported lazily so that listing "pxtserve"
in INSTALLED_APPS does not import Pixeltable before Django is set up.
"""

from typing import Any

__all__ = [
    "ComputeRoute",
    "DeleteRoute",
    "InsertRoute",
    "PixeltableRouter",
    "QueryRoute",
    "ServiceConfig",
    "SqlExport",
    "UpdateRoute",
    "build_service",
    "load_service",
]

_EXPORTS = {
    "PixeltableRouter": "pxtserve.router",
    # the route declarations, for router.add_route(InsertRoute(table=..., path=...))
    "InsertRoute": "pxtserve.routes.insert",
    "UpdateRoute": "pxtserve.routes.update",
    "DeleteRoute": "pxtserve.routes.delete",
    "QueryRoute": "pxtserve.routes.query",
    "ComputeRoute": "pxtserve.routes.compute",
    "SqlExport": "pxtserve.export",
    "ServiceConfig": "pxtserve.config",
    "load_service": "pxtserve.config",
    "build_service": "pxtserve.service",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pxtserve' has no attribute {name!r}")
