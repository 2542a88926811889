"""Test session setup: a throwaway PIXELTABLE_HOME, the test tables, and helpers to serve a service."""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# before anything imports pixeltable: this session's own Pixeltable instance
os.environ.setdefault("PIXELTABLE_HOME", tempfile.mkdtemp(prefix="pxtserve-pxt-"))
os.environ.pop("PXTSERVE_SERVICE_JSON", None)

import pytest
from django.test import Client, override_settings

# fixtures for the real external servers: postgres_url, mariadb_url, sqlite_url, redis_url;
# and the compute-route tests' tables and client: cs, compute_client
pytest_plugins = ["tests.sql_targets", "tests.services", "tests.compute_helpers"]

_ids = itertools.count(1000)


@pytest.fixture(scope="session")
def pxt_tables() -> types.ModuleType:
    from tests.pxt_app import schema

    return schema


@pytest.fixture
def new_id() -> Any:
    """Unique primary keys across the session (tables are shared by all tests)."""
    return lambda: next(_ids)


def service_from_toml(text: str, name: str | None = None) -> Any:
    from pxtserve.config import load_service

    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    return load_service(f.name, name)


@contextmanager
def serving(config: Any) -> Iterator[Client]:
    """A test client whose URLconf serves `config` (built like `manage.py serve` builds it)."""
    from pxtserve.service import build_service

    built = build_service(config)
    urlconf = types.ModuleType(f"pxtserve_test_urls_{next(_ids)}")
    urlconf.urlpatterns = built.urlpatterns()  # type: ignore[attr-defined]
    with override_settings(ROOT_URLCONF=urlconf):
        yield Client()


@contextmanager
def mounted(router: Any) -> Iterator[Client]:
    """A client for a site that mounts `router` at /api/pxt/, as a third-party urls.py would."""
    from django.urls import path
    from ninja import NinjaAPI

    n = next(_ids)
    api = NinjaAPI(urls_namespace=f"mounted-test-{n}")
    api.add_router("/pxt", router)
    urlconf = types.ModuleType(f"mounted_test_urls_{n}")
    urlconf.urlpatterns = [path("api/", api.urls)]  # type: ignore[attr-defined]
    with override_settings(ROOT_URLCONF=urlconf):
        yield Client()


@pytest.fixture
def serve(pxt_tables: types.ModuleType) -> Any:
    """serve(toml_text) -> a Django test client serving that service."""
    stack: list[Any] = []

    def _serve(text: str) -> Client:
        cm = serving(service_from_toml(text))
        stack.append(cm)
        return cm.__enter__()

    yield _serve
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the session's embedded PostgreSQL (Pixeltable leaves it running), unless a process still uses it."""
    if "pixeltable" in sys.modules:  # this session started Pixeltable (importing it here would not)
        from pxtserve.pxt_internals import stop_embedded_database_unless_used

        stop_embedded_database_unless_used()
