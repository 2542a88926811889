"""A declared service turned into a served NinjaAPI, and the one this process serves."""

from __future__ import annotations

import importlib
import itertools
import threading
from dataclasses import dataclass
from typing import Any

import pixeltable as pxt
from django.urls import URLPattern, URLResolver, path
from ninja import NinjaAPI
from ninja.constants import NOT_SET

import pxtserve
from pxtserve import conf, metrics
from pxtserve.api_errors import install_error_handlers
from pxtserve.auth import api_key_auth
from pxtserve.config import ServiceConfig, load_service
from pxtserve.docs_access import docs_decorator
from pxtserve.errors import RouteDefinitionError, ServiceConfigError
from pxtserve.pxtconfig import init_pixeltable_config
from pxtserve.router import PixeltableRouter

_api_ids = itertools.count(1)


@dataclass
class BuiltService:
    config: ServiceConfig
    api: NinjaAPI
    router: PixeltableRouter

    def urlpatterns(self) -> list[URLPattern | URLResolver]:
        prefix = self.config.prefix.strip("/")
        # <prefix>/metrics, behind the service's auth unless PXTSERVE["METRICS_AUTH"] says otherwise
        metrics_view = metrics.make_metrics_view(auth=self.router.auth)
        return [
            path(f"{prefix}/metrics" if prefix else "metrics", metrics_view),
            path(f"{prefix}/" if prefix else "", self.api.urls),
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "title": self.config.title,
            "source": self.config.source,
            "prefix": self.config.prefix,
            "host": self.config.host,
            "port": self.config.port,
            "docs": f"{self.config.prefix}/docs",
            "modules": self.config.modules,
            "mcp": f"{self.config.prefix}/mcp" if self.router.mcp else None,
            "routes": self.router.describe(),
        }


def build_service(config: ServiceConfig) -> BuiltService:
    """Import the service's modules and register every route; any problem is a ServiceConfigError naming it."""
    init_pixeltable_config()
    for module in config.modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # whatever the module raises, the user needs to know which one and why
            raise config.error(
                f"cannot import module {module!r}: {type(exc).__name__}: {exc}", field="modules"
            ) from exc
    auth = _service_auth(config)
    try:
        router = PixeltableRouter(
            name=config.name, auth=auth["api_key"] if config.auth == "api_key" else NOT_SET, mcp=config.mcp
        )
    except RouteDefinitionError as exc:  # mcp = true without the SDK
        raise config.error(exc.message, field=exc.field) from exc
    for index, route in enumerate(config.routes):
        own_auth = auth[route.auth] if route.auth is not None and route.auth != config.auth else NOT_SET
        try:
            router.add_route(route, auth=own_auth)
        except RouteDefinitionError as exc:
            raise config.error(exc.message, index=index, field=exc.field) from exc
        except pxt.Error as exc:
            raise config.error(str(exc), index=index) from exc
    api = NinjaAPI(
        title=config.title,
        # info.version of the OpenAPI document: what a generated client records it was made from
        version=pxtserve.__version__,
        urls_namespace=f"pxtserve-{next(_api_ids)}",
        docs_url="/docs",
        docs_decorator=docs_decorator(router.auth),
    )
    install_error_handlers(api)
    api.add_router("", router)
    return BuiltService(config=config, api=api, router=router)


def _service_auth(config: ServiceConfig) -> dict[str, Any]:
    """The Ninja auth for each of the service's auth modes ("none": no auth)."""
    modes = {config.auth, *(r.auth for r in config.routes if r.auth is not None)}
    api_key: Any = None
    if "api_key" in modes:
        env_var = config.api_keys_env

        def keys() -> list[str]:
            return conf.api_keys(env_var)

        if not keys():
            where = f"the environment variable {env_var} or " if env_var else ""
            raise config.error(
                f'auth = "api_key" needs keys: set {where}PXTSERVE_API_KEYS / settings.PXTSERVE["API_KEYS"]',
                field="auth",
            )
        api_key = api_key_auth(keys)
    return {"none": None, "api_key": api_key}


_active: BuiltService | None = None
_active_lock = threading.Lock()


def activate(config: ServiceConfig) -> BuiltService:
    """Build `config` and make it the service this process's URLconf serves."""
    global _active
    built = build_service(config)
    with _active_lock:
        _active = built
    conf.set_service_json_env(config.model_dump_json())
    return built


def configured_service() -> ServiceConfig | None:
    """The service this process was told to serve: by `manage.py serve` or by settings.PXTSERVE."""
    raw = conf.service_json_from_env()
    if raw:
        config = ServiceConfig.model_validate_json(raw)
        return config
    path, name = conf.settings().CONFIG, conf.settings().SERVICE
    if path is None:
        return None
    return load_service(path, name)


def active_service() -> BuiltService | None:
    """The served service, built on first use from the configuration when not activated yet."""
    global _active
    with _active_lock:
        if _active is None:
            config = configured_service()
            if config is not None:
                _active = build_service(config)
        return _active


__all__ = ["BuiltService", "ServiceConfigError", "activate", "active_service", "build_service"]
