"""Test settings: the standalone site's, with a throwaway Django database and synchronous jobs."""

import os
import tempfile

from project.settings import *

_TMP = tempfile.mkdtemp(prefix="pxtserve-django-")

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(_TMP, "django.sqlite3")}}
# the tests insert images they write under the system tmp dir by path
PXTSERVE = {"MEDIA_INPUT_DIRS": [tempfile.gettempdir()]}
# django-q2 reads its settings once, at import: jobs run inside async_task, in the submitting thread
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
