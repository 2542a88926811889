"""pxtserve's settings, with their defaults, in one place.

Read from `settings.PXTSERVE` (a dict); the serve command passes its resolved
service to child processes through the PXTSERVE_SERVICE_JSON environment
variable, read here too, so nothing else in the app touches os.environ.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # a service file (TOML or pyproject.toml) and the name of the service in it to serve
    "CONFIG": None,
    "SERVICE": None,
    # threads that run Pixeltable calls (writes have their own thread per table, pxtserve/writes.py);
    # None: Pixeltable's db_pool_size (5 by default), so that every thread keeps one pooled connection
    "POOL_SIZE": None,
    # how often (seconds) a route re-reads its table's schema version to notice changes (409);
    # a failing Pixeltable call always re-reads it
    "SCHEMA_CHECK_INTERVAL": 1.0,
    # most rows one grouped insert/update call may carry (write coordination, pxtserve/writes.py);
    # twice this many write requests can wait for their table's writer at once (pxtserve/executor.py)
    "WRITE_BATCH_MAX": 64,
    # largest accepted file upload, in bytes (larger ones answer 413)
    "MAX_UPLOAD_SIZE": 100 * 1024 * 1024,
    # media sent as JSON strings: server-local paths are accepted only inside these directories
    "MEDIA_INPUT_DIRS": [],
    # ... and http(s) URLs are fetched only when this is on (never from non-public addresses)
    "MEDIA_FETCH_URLS": False,
    "MEDIA_FETCH_TIMEOUT": 30,
    # largest accepted request body, in bytes (413 beyond it); uploads count towards it
    "MAX_REQUEST_BODY": 101 * 1024 * 1024,
    # seconds a synchronous route may run before it answers 504 (None: no limit)
    "REQUEST_TIMEOUT": 300,
    # seconds `serve` lets in-flight requests finish after SIGTERM/Ctrl-C before closing them
    "SHUTDOWN_GRACE_SECONDS": 30,
    # the middleware of API requests (pxtserve.asgi): async-capable ones only, or each costs thread hops
    "API_MIDDLEWARE": ["pxtserve.headers.SecurityHeadersMiddleware", "pxtserve.cors.CorsMiddleware"],
    # paths that keep Django's full handler and settings.MIDDLEWARE (STATIC_URL is added)
    "FULL_DJANGO_PATHS": ["/admin/"],
    # origins allowed to call the API from a browser (CORS); empty: CORS off. "*" allows any.
    "CORS_ALLOWED_ORIGINS": [],
    # keys accepted by routes with auth = "api_key" (besides those in the service's api_keys_env variable)
    "API_KEYS": [],
    # finished background jobs are deleted this long after they finish
    "JOB_RETENTION_SECONDS": 7 * 24 * 3600,
    # where files uploaded to background routes wait for a worker; default: <Pixeltable home>/pxtserve_job_uploads
    "JOB_UPLOAD_DIR": None,
}

# set by `manage.py serve` for the processes it starts (uvicorn workers, job workers)
SERVICE_JSON_ENV = "PXTSERVE_SERVICE_JSON"


def get(name: str) -> Any:
    user = getattr(settings, "PXTSERVE", None) or {}
    if name not in DEFAULTS:
        raise KeyError(f"unknown pxtserve setting {name!r}")
    value = user.get(name)
    return DEFAULTS[name] if value is None else value


def service_json_from_env() -> str | None:
    return os.environ.get(SERVICE_JSON_ENV)


def set_service_json_env(value: str) -> None:
    os.environ[SERVICE_JSON_ENV] = value


def expand_env_vars(text: str) -> str:
    """Expand ${NAME} references; an undefined variable is an error naming it."""
    import re

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise KeyError(name)
        return os.environ[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", replace, text)


def api_keys(env_var: str | None = None) -> list[str]:
    """The API keys: settings.PXTSERVE["API_KEYS"] plus the comma-separated keys in `env_var`."""
    keys = [str(k) for k in get("API_KEYS") if k]
    if env_var:
        keys += [k.strip() for k in os.environ.get(env_var, "").split(",") if k.strip()]
    return keys
