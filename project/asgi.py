"""ASGI entry point: `uvicorn project.asgi:application` (what `manage.py serve` runs too)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from pxtserve.asgi import build_application

application = build_application()
