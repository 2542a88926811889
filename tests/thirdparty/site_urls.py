"""The third-party site's whole URLconf: its Python-built APIs (urls.py) plus the service its settings name."""

from django.urls import include, path

urlpatterns = [
    path("svc/", include("pxtserve.urls")),
    path("", include("tests.thirdparty.urls")),
]
