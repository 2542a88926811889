"""Liveness and readiness endpoints of the standalone site."""

from django.test import Client, override_settings


@override_settings(ROOT_URLCONF="project.urls")
def test_healthz_and_readyz(pxt_tables, db):
    client = Client()
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200, r.content
    assert r.json() == {"status": "ok", "checks": {"pixeltable": "ok", "database": "ok"}}
