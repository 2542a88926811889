"""Liveness and readiness for load balancers: /healthz answers while the process serves;
/readyz also checks that Pixeltable and Django's database answer."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse

from pxtserve.executor import run_in_pool


async def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_pixeltable() -> None:
    import pixeltable as pxt

    pxt.list_tables()


def _check_django_db() -> None:
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


async def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    for name, check in (("pixeltable", _check_pixeltable), ("django_db", _check_django_db)):
        try:
            await run_in_pool(check)
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; say which and why
            checks[name] = f"error: {type(exc).__name__}: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
