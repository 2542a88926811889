"""Settings of a minimal third-party Django site: pxtserve is just one of its installed apps.

Standalone on purpose (nothing from project.settings), so it shows what a site
needs and nothing more. The in-process tests keep tests.settings and only swap
ROOT_URLCONF; a subprocess test runs a whole site on these settings.
"""

import os
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

SECRET_KEY = "pxtserve-thirdparty-test-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "ninja",
    "django_q",
    "pxtserve",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]

ROOT_URLCONF = "tests.thirdparty.site_urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(tempfile.mkdtemp(prefix="pxtserve-thirdparty-"), "django.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# jobs run in the request's process: nothing else has to be started
Q_CLUSTER = {"name": "thirdparty", "orm": "default", "sync": True, "timeout": 60, "retry": 120}

# the settings-driven service that include("pxtserve.urls") serves (see site_urls.py)
PXTSERVE = {"CONFIG": str(HERE / "service.toml"), "SERVICE": "thirdparty-svc"}
