"""Settings of the standalone pxtserve site (`pxtserve serve`, `manage.py serve`).

Everything deployment-specific comes from the environment, with defaults that run
anywhere with nothing else installed: SQLite in the data directory for Django,
Pixeltable's embedded PostgreSQL for the data, django-q2 on Django's own database
for jobs. They ship in the package, so a pip-installed pxtserve serves on its own;
the checkout's project/settings.py re-exports them.
"""

import os
from pathlib import Path

from corsheaders.defaults import default_headers


def _var_dir() -> Path:
    """The data directory: Django's SQLite database and collected static files (not Pixeltable's data).

    PXTSERVE_VAR_DIR when set; else var/ of the source checkout this package was imported
    from (as it always was there); else, for an installed package, pxtserve-data/ in the
    current directory, beside the service file it serves. Absolute, so that every process
    of one serve (web workers, the job workers' child) agrees on it.
    """
    if os.environ.get("PXTSERVE_VAR_DIR"):
        return Path(os.environ["PXTSERVE_VAR_DIR"]).expanduser().absolute()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "manage.py").is_file() and (checkout / "project" / "settings.py").is_file():
        return checkout / "var"
    # site-packages is no place for a database, and a user's home is shared by all their services
    return Path.cwd() / "pxtserve-data"


VAR_DIR = _var_dir()
# created here, at start: SQLite does not create its file's directory, and WhiteNoise warns on a missing STATIC_ROOT
try:
    (VAR_DIR / "static").mkdir(parents=True, exist_ok=True)
except OSError as exc:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"cannot create pxtserve's data directory {VAR_DIR} ({exc.strerror}): "
        "run from a writable directory or set PXTSERVE_VAR_DIR"
    ) from exc

# A fixed key is fine for local use only; a deployment sets DJANGO_SECRET_KEY.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "pxtserve-local-development-key-change-me")
# `manage.py serve` warns loudly when a site with public ALLOWED_HOSTS still uses the default key
SECRET_KEY_IS_DEFAULT = "DJANGO_SECRET_KEY" not in os.environ
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = [
    h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",") if h
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",
    "corsheaders",
    "django_q",
    "pxtserve",
]

MIDDLEWARE = [
    # first: X-Request-ID on every response, the id on every log line, the access line (pxtserve.request_id)
    "pxtserve.request_id.RequestIdMiddleware",
    # a Host that ALLOWED_HOSTS does not allow is a JSON 400 here too, as on the API paths
    "pxtserve.api_errors.AllowedHostsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # serves /static/ (Swagger UI, admin) under uvicorn with DEBUG off, offline
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # django-cors-headers: off unless CORS_ALLOWED_ORIGINS lists origins (PXTSERVE_CORS_ALLOWED_ORIGINS)
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "pxtserve.site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "pxtserve.site.asgi.application"


def _database_from_url(url: str) -> dict:
    """DJANGO_DATABASE_URL=postgresql://user:password@host:port/name (for several nodes sharing one database)."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [""])[0]  # ?host=/path/to/socket/dir
    if parts.scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
        raise ValueError(f"DJANGO_DATABASE_URL: unsupported scheme {parts.scheme!r} (expected postgresql://)")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or socket_dir,
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 0,
    }


if os.environ.get("DJANGO_DATABASE_URL"):
    DATABASES = {"default": _database_from_url(os.environ["DJANGO_DATABASE_URL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("PXTSERVE_DJANGO_DB", str(VAR_DIR / "django.sqlite3")),
            # kept open by the few pooled threads that touch it (job submits and polls run on a bounded
            # executor): reopening a WAL database costs more than the job row's insert
            "CONN_MAX_AGE": 600,
            "OPTIONS": {
                "timeout": 20,
                # WAL: job submissions and polls from several threads and the workers don't block each
                # other; synchronous=NORMAL commits survive a killed process (not a power cut of the host)
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                # take the write lock at BEGIN, so concurrent writers queue instead of failing to upgrade
                "transaction_mode": "IMMEDIATE",
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# WhiteNoise finds app static files itself when no collectstatic has run
WHITENOISE_USE_FINDERS = True

# django-q2: the ORM broker needs nothing but Django's database
Q_CLUSTER = {
    "name": "pxtserve",
    "orm": "default",
    # each job worker loads a whole Pixeltable stack: one by default (README, "Background jobs")
    "workers": int(os.environ.get("PXTSERVE_JOB_WORKERS", "1")),
    "timeout": 3600,
    "retry": 3700,
    "max_attempts": 1,
    "catch_up": False,
    # a job's outcome is its Job row: django-q2's copy of a successful task would only be pruning work (with its
    # default limit of 250, every save reads all the kept rows); failed tasks are still saved, for the hook
    "save_limit": -1,
}
# scale-out: a Redis broker shared by every node (PXTSERVE_REDIS_URL=redis://host:6379/0)
if os.environ.get("PXTSERVE_REDIS_URL"):
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = os.environ["PXTSERVE_REDIS_URL"]

# CORS (django-cors-headers, in the API chain too): the origins allowed to call the API from a browser,
# comma-separated in PXTSERVE_CORS_ALLOWED_ORIGINS; "*" allows any
_cors_origins = [o for o in os.environ.get("PXTSERVE_CORS_ALLOWED_ORIGINS", "").split(",") if o]
CORS_ALLOW_ALL_ORIGINS = "*" in _cors_origins
CORS_ALLOWED_ORIGINS = [o for o in _cors_origins if o != "*"]
# what API clients send beyond the defaults: API keys, and the headers of media range/cache requests
CORS_ALLOW_HEADERS = (*default_headers, "x-api-key", "range", "if-none-match", "if-range", "idempotency-key")
CORS_ALLOW_METHODS = ("GET", "HEAD", "POST", "OPTIONS")
# what a browser script may read of a response: partial media, job polling, request ids, idempotent replays
CORS_EXPOSE_HEADERS = ["content-range", "content-length", "etag", "retry-after", "x-request-id", "idempotent-replayed"]
CORS_PREFLIGHT_MAX_AGE = 600


def _metrics_auth(value: str) -> str | list[str]:
    """PXTSERVE_METRICS_AUTH: "service" (the service's auth, the default), "none", or comma-separated keys."""
    return value if value in ("service", "none") else [k.strip() for k in value.split(",") if k.strip()]


# pxtserve: which service file this site serves (manage.py serve overrides it)
PXTSERVE = {
    "CONFIG": os.environ.get("PXTSERVE_CONFIG"),
    "SERVICE": os.environ.get("PXTSERVE_SERVICE"),
    # keys for routes with auth = "api_key": comma-separated, never in the service file
    "API_KEYS": [k.strip() for k in os.environ.get("PXTSERVE_API_KEYS", "").split(",") if k.strip()],
    "MEDIA_INPUT_DIRS": [d for d in os.environ.get("PXTSERVE_MEDIA_INPUT_DIRS", "").split(",") if d],
    "MEDIA_FETCH_URLS": os.environ.get("PXTSERVE_MEDIA_FETCH_URLS", "0") == "1",
    "POOL_SIZE": int(os.environ["PXTSERVE_POOL_SIZE"]) if os.environ.get("PXTSERVE_POOL_SIZE") else None,
    # background routes' webhook_url deliveries: the signing secret, and whether private addresses may receive them
    "WEBHOOK_SECRET": os.environ.get("PXTSERVE_WEBHOOK_SECRET") or None,
    "WEBHOOK_ALLOW_PRIVATE": os.environ.get("PXTSERVE_WEBHOOK_ALLOW_PRIVATE", "0") == "1",
    # GET <prefix>/metrics: PXTSERVE_METRICS=0 turns metrics off; who may read them (pxtserve/conf.py)
    "METRICS": os.environ.get("PXTSERVE_METRICS", "1") != "0",
    "METRICS_AUTH": _metrics_auth(os.environ.get("PXTSERVE_METRICS_AUTH") or "service"),
    # PXTSERVE_MCP=1: every router answers MCP at <prefix>/mcp (a service's own `mcp` wins)
    "MCP": os.environ.get("PXTSERVE_MCP", "0") == "1",
    # background jobs waiting at most, all routes together (default: conf.py's)
    **({"MAX_PENDING_JOBS": int(n)} if (n := os.environ.get("PXTSERVE_MAX_PENDING_JOBS")) else {}),
    **({"JOB_RUNNER": runner} if (runner := os.environ.get("PXTSERVE_JOB_RUNNER")) else {}),
    # 0: every read hops to the call pool (pxtserve/inline_reads.py)
    **({"INLINE_READ_SECONDS": limit} if (limit := os.environ.get("PXTSERVE_INLINE_READ_SECONDS")) else {}),
    # seconds an Idempotency-Key is remembered (default: conf.py's)
    **({"IDEMPOTENCY_TTL": ttl} if (ttl := os.environ.get("PXTSERVE_IDEMPOTENCY_TTL")) else {}),
    # seconds a signed media URL stays valid (default: conf.py's)
    **({"MEDIA_URL_TTL": int(ttl)} if (ttl := os.environ.get("PXTSERVE_MEDIA_URL_TTL")) else {}),
}

# One configuration for every process of a serve (web server, uvicorn --workers, the job workers), all to stderr
# with the request id: `serve --log-level/--log-format/--no-access-log` set these variables for the processes it
# starts (pxtserve/logs.py). PXTSERVE_LOG_LEVEL: debug|info|warning|error (info); PXTSERVE_LOG_FORMAT: text|json
# (text); PXTSERVE_ACCESS_LOG=0: no line per request.
from pxtserve.logs import logging_config_from_env

LOGGING = logging_config_from_env()
