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
    "__version__",
    "build_service",
    "load_service",
]


# resolved on first use (__getattr__), like the exports: reading package metadata scans sys.path
__version__: str

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


def _installed_version() -> str:
    """The installed distribution's version; a source checkout run in place (not installed) is pyproject.toml's."""
    from importlib import metadata

    try:
        return metadata.version("pxtserve")
    except metadata.PackageNotFoundError:
        return "0.1.0"  # keep in step with pyproject.toml's [project] version (tests/test_openapi_client.py)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        version = globals()["__version__"] = _installed_version()
        return version
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pxtserve' has no attribute {name!r}")
