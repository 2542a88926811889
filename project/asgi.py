"""ASGI entry point: `uvicorn project.asgi:application`."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from pxtserve import conf  # noqa: E402  (settings must be configured first)
from pxtserve.limits import BodySizeLimit  # noqa: E402

application = BodySizeLimit(get_asgi_application(), lambda: int(conf.get("MAX_REQUEST_BODY")))
