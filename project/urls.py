"""URLs of the standalone site: the admin, and the active Pixeltable service."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("pxtserve.urls")),
]
