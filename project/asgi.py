"""ASGI entry point from this checkout: `uvicorn project.asgi:application`, the packaged site's on project.settings."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# after the settings module is chosen: pxtserve.site.asgi would otherwise default to its own
from pxtserve.site.asgi import application

__all__ = ["application"]
