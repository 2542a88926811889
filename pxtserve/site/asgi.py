"""ASGI entry point of the standalone site: `uvicorn pxtserve.site.asgi:application`."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pxtserve.site.settings")

# after the default settings module is chosen: building the application sets Django up
from pxtserve.asgi import build_application

application = build_application()
