"""URLs of the standalone site: the admin, and the active Pixeltable service."""

from django.contrib import admin
from django.urls import include, path

from pxtserve.health import healthz, readyz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("", include("pxtserve.urls")),
]
