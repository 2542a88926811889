"""The ASGI application pxtserve serves: Django's, behind the request size limit."""

from __future__ import annotations

from typing import Any


def build_application() -> Any:
    from django.core.asgi import get_asgi_application

    from pxtserve import conf
    from pxtserve.limits import BodySizeLimit

    return BodySizeLimit(get_asgi_application(), lambda: int(conf.get("MAX_REQUEST_BODY")))


_application: Any = None


def __getattr__(name: str) -> Any:
    """`pxtserve.asgi:application`, built on first use (what `serve --workers N` hands to uvicorn)."""
    global _application
    if name != "application":
        raise AttributeError(name)
    if _application is None:
        import django

        django.setup()
        _application = build_application()
    return _application
