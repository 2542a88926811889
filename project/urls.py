"""URLs of the standalone site run from this checkout: the packaged site's (pxtserve/site/urls.py)."""

from pxtserve.site.urls import urlpatterns

__all__ = ["urlpatterns"]
