"""Service files: TOML (standalone `[[service]]` or pyproject `[[tool.pixeltable.service]]`)
into pydantic models, and each route model into the router call it stands for.

The CLI's single-endpoint flags build the same route models, so a route is
declared one way whatever the entry point.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from pxtserve.conf import expand_env_vars
from pxtserve.export import SqlExport

if TYPE_CHECKING:
    from pxtserve.router import PixeltableRouter


class ServiceConfigError(Exception):
    """A service declaration that cannot be served; the message names where."""


def _location(source: str | None, service: str | None, index: int | None, path: str | None, field: str | None) -> str:
    parts = [source or "<service>"]
    if service:
        parts.append(f"service {service!r}")
    if index is not None:
        parts.append(f"route #{index + 1}" + (f" ({path})" if path else ""))
    if field:
        parts.append(f"field {field!r}")
    return ": ".join(parts)


class _Route(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    background: bool = False
    # None: the service's auth; "none" makes this route public on a protected service
    auth: Literal["none", "api_key"] | None = None

    @pydantic.field_validator("path")
    @classmethod
    def _leading_slash(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"path must start with '/', got {v!r}")
        return v

    def register(self, router: PixeltableRouter, auth: dict[str, Any]) -> Any:
        """Add this route to `router`; `auth` holds the route's own auth, if it differs from the router's."""
        raise NotImplementedError


def _expand_export(v: Any) -> Any:
    """Connection strings may say ${VAR}, so passwords need not be written into the file."""
    if isinstance(v, dict) and isinstance(v.get("db_connect"), str):
        try:
            return {**v, "db_connect": expand_env_vars(v["db_connect"])}
        except KeyError as exc:
            raise ValueError(f"db_connect refers to the environment variable {exc.args[0]}, which is not set") from None
    return v


ExportField = Annotated[SqlExport | None, pydantic.BeforeValidator(_expand_export)]


class InsertRoute(_Route):
    type: Literal["insert"]
    table: str
    inputs: list[str] | None = None
    uploadfile_inputs: list[str] | None = None
    outputs: list[str] | None = None
    return_fileresponse: bool = False
    export_sql: ExportField = None

    def register(self, router: PixeltableRouter, auth: dict[str, Any]) -> Any:
        return router.add_insert_route(
            self.table,
            path=self.path,
            inputs=self.inputs,
            uploadfile_inputs=self.uploadfile_inputs,
            outputs=self.outputs,
            return_fileresponse=self.return_fileresponse,
            export_sql=self.export_sql,
            background=self.background,
            **auth,
        )


class UpdateRoute(_Route):
    type: Literal["update"]
    table: str
    inputs: list[str] | None = None
    outputs: list[str] | None = None
    return_fileresponse: bool = False
    export_sql: ExportField = None

    def register(self, router: PixeltableRouter, auth: dict[str, Any]) -> Any:
        return router.add_update_route(
            self.table,
            path=self.path,
            inputs=self.inputs,
            outputs=self.outputs,
            return_fileresponse=self.return_fileresponse,
            export_sql=self.export_sql,
            background=self.background,
            **auth,
        )


class DeleteRoute(_Route):
    type: Literal["delete"]
    table: str
    match_columns: list[str] | None = None

    def register(self, router: PixeltableRouter, auth: dict[str, Any]) -> Any:
        return router.add_delete_route(
            self.table, path=self.path, match_columns=self.match_columns, background=self.background, **auth
        )


class QueryRoute(_Route):
    type: Literal["query"]
    query: str
    inputs: list[str] | None = None
    uploadfile_inputs: list[str] | None = None
    one_row: bool = False
    return_fileresponse: bool = False
    method: Literal["get", "post"] = "post"

    def register(self, router: PixeltableRouter, auth: dict[str, Any]) -> Any:
        return router.add_query_route(
            path=self.path,
            query=self.query,
            inputs=self.inputs,
            uploadfile_inputs=self.uploadfile_inputs,
            one_row=self.one_row,
            return_fileresponse=self.return_fileresponse,
            background=self.background,
            method=self.method,
            **auth,
        )


RouteConfig = Annotated[InsertRoute | UpdateRoute | DeleteRoute | QueryRoute, Field(discriminator="type")]
ROUTE_MODELS: dict[str, type[_Route]] = {
    "insert": InsertRoute,
    "update": UpdateRoute,
    "delete": DeleteRoute,
    "query": QueryRoute,
}


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
            loc = loc[3:] if len(loc) > 2 and loc[2] in ROUTE_MODELS else loc[2:]
        field = ".".join(str(p) for p in loc) or None
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "union_tag_invalid":
            message = f"unknown route type {route.get('type')!r}; expected one of: {', '.join(ROUTE_MODELS)}"
            field = "type"
        elif err["type"] == "union_tag_not_found":
            message = "missing route type; expected one of: " + ", ".join(ROUTE_MODELS)
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


def route_from_fields(kind: str, fields: dict[str, Any]) -> RouteConfig:
    """A route model from single-endpoint CLI flags (the flags unset are left out)."""
    raw = {"type": kind, **{k: v for k, v in fields.items() if v is not None}}
    parsed = ServiceConfig.model_validate({"name": kind, "routes": [raw]})
    return parsed.routes[0]
