"""URLs of the active service: include("pxtserve.urls") in a site's urlpatterns."""

from pxtserve.service import active_service

_service = active_service()

urlpatterns = _service.urlpatterns() if _service is not None else []
