"""Service files: TOML (standalone `[[service]]` or pyproject `[[tool.pixeltable.service]]`)
into a ServiceConfig whose routes are the route kinds' own declarations (pxtserve.routes).

The CLI's single-endpoint flags and the Python API build the same route declarations,
so a route is declared one way whatever the entry point.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from pxtserve.errors import ServiceConfigError
from pxtserve.routes.kinds import ROUTE_KINDS, RouteConfig


def _location(source: str | None, service: str | None, index: int | None, path: str | None, field: str | None) -> str:
    parts = [source or "<service>"]
    if service:
        parts.append(f"service {service!r}")
    if index is not None:
        parts.append(f"route #{index + 1}" + (f" ({path})" if path else ""))
    if field:
        parts.append(f"field {field!r}")
    return ": ".join(parts)


class ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    title: str = "Pixeltable"
    prefix: str = ""
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535)
    modules: list[str] = []
    # "api_key": every route (and its media and job URLs) needs a key, unless the route says auth = "none"
    auth: Literal["none", "api_key"] = "none"
    # an environment variable with comma-separated keys, in addition to settings.PXTSERVE["API_KEYS"]
    api_keys_env: str | None = None
    # the routes as MCP tools at <prefix>/mcp (pxtserve.mcp_endpoint; needs pxtserve[mcp]); None: PXTSERVE["MCP"]
    mcp: bool | None = None
    routes: list[RouteConfig] = []
    # where it was declared, for error messages; not part of the TOML syntax
    source: str | None = Field(default=None, exclude=True)

    @pydantic.field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and not v.startswith("/"):
            raise ValueError(f"prefix must be empty or start with '/', got {v!r}")
        return v.rstrip("/")

    def error(self, message: str, *, index: int | None = None, field: str | None = None) -> ServiceConfigError:
        path = self.routes[index].path if index is not None and index < len(self.routes) else None
        return ServiceConfigError(f"{_location(self.source, self.name, index, path, field)}: {message}")


def _validation_message(exc: pydantic.ValidationError, raw: dict[str, Any], source: str) -> str:
    """One line per problem, each naming the service, the route and the field."""
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        index = path = None
        if len(loc) >= 2 and loc[0] == "routes" and isinstance(loc[1], int):
            index = loc[1]
            routes = raw.get("routes") or []
            route = routes[index] if index < len(routes) and isinstance(routes[index], dict) else {}
            path = route.get("path") if isinstance(route.get("path"), str) else None
            loc = loc[3:] if len(loc) > 2 and loc[2] in ROUTE_KINDS else loc[2:]
        field = ".".join(str(p) for p in loc) or None
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "union_tag_invalid":
            message = f"unknown route type {route.get('type')!r}; expected one of: {', '.join(ROUTE_KINDS)}"
            field = "type"
        elif err["type"] == "union_tag_not_found":
            message = "missing route type; expected one of: " + ", ".join(ROUTE_KINDS)
            field = "type"
        lines.append(f"{_location(source, name, index, path, field)}: {message}")
    return "\n".join(lines)


def parse_service(raw: dict[str, Any], source: str) -> ServiceConfig:
    try:
        service = ServiceConfig.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise ServiceConfigError(_validation_message(exc, raw, source)) from None
    service.source = source
    return service


def read_services(path: str | Path) -> list[dict[str, Any]]:
    """The raw service tables of a standalone TOML file or a pyproject.toml."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ServiceConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ServiceConfigError(f"{path}: not valid TOML: {exc}") from None
    if "tool" in data and isinstance(data["tool"], dict) and "pixeltable" in data["tool"]:
        services = data["tool"]["pixeltable"].get("service", [])
    else:
        services = data.get("service", [])
    if isinstance(services, dict):  # [service] written as a table instead of [[service]]
        services = [services]
    if not services:
        where = "[[tool.pixeltable.service]]" if path.name == "pyproject.toml" else "[[service]]"
        raise ServiceConfigError(f"{path}: declares no service (expected {where} tables)")
    return services


def load_service(path: str | Path, name: str | None = None) -> ServiceConfig:
    """The service called `name` in the file (the only one, when name is None)."""
    raw_services = read_services(path)
    names = [s.get("name") for s in raw_services]
    if name is None:
        if len(raw_services) != 1:
            raise ServiceConfigError(f"{path}: declares {len(raw_services)} services; name one of: {names}")
        raw = raw_services[0]
    else:
        matches = [s for s in raw_services if s.get("name") == name]
        if not matches:
            raise ServiceConfigError(f"{path}: no service named {name!r} (services: {', '.join(map(str, names))})")
        if len(matches) > 1:
            raise ServiceConfigError(f"{path}: {len(matches)} services are named {name!r}")
        raw = matches[0]
    return parse_service(raw, str(path))


__all__ = ["ServiceConfig", "ServiceConfigError", "load_service", "parse_service", "read_services"]
