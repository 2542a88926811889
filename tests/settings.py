"""Test settings: the standalone site's, with a throwaway Django database and synchronous jobs."""

import os
import tempfile

from project.settings import *  # noqa: F403

_TMP = tempfile.mkdtemp(prefix="pxtserve-django-")

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(_TMP, "django.sqlite3")}}
PXTSERVE = {}
