"""pxtserve's settings: `settings.PXTSERVE` (a dict) read into one typed, validated object.

`conf.settings()` is that object. An unknown key or a value of the wrong type is a
SettingsError naming the key (raised when the app starts, pxtserve.apps); `None` is a
value like any other (`"REQUEST_TIMEOUT": None` means no limit). The object is rebuilt
when Django's `setting_changed` names PXTSERVE, so tests can override it.

The serve command passes its resolved service to child processes through the
PXTSERVE_SERVICE_JSON environment variable, read here too, so nothing else in the
app touches os.environ.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any, Literal

import pydantic
from django.conf import settings as django_settings
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from pxtserve.errors import SettingsError

JobRunner = Literal["auto", "in-process", "cluster"]


class Settings(pydantic.BaseModel):
    """Every pxtserve setting, with its default."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    # a service file (TOML or pyproject.toml) and the name of the service in it to serve
    CONFIG: Path | None = None
    SERVICE: str | None = None
    # threads that run Pixeltable calls (writes have their own thread per table, pxtserve/writes.py);
    # None: Pixeltable's db_pool_size, so that every thread keeps one pooled connection
    POOL_SIZE: PositiveInt | None = None
    # how often (seconds) a route re-reads its table's schema version to notice changes (409);
    # a failing Pixeltable call always re-reads it
    SCHEMA_CHECK_INTERVAL: NonNegativeFloat = 1.0
    # most rows one grouped insert/update call may carry (write coordination, pxtserve/writes.py);
    # twice this many write requests can wait for their table's writer at once (pxtserve/executor.py)
    WRITE_BATCH_MAX: PositiveInt = 64
    # most rows one request of a `batch = true` route may carry (read when the route is registered)
    MAX_BATCH_ROWS: PositiveInt = 1000
    # largest accepted file upload, in bytes (larger ones answer 413)
    MAX_UPLOAD_SIZE: PositiveInt = 100 * 1024 * 1024
    # media sent as JSON strings: server-local paths are accepted only inside these directories
    MEDIA_INPUT_DIRS: list[str] = []
    # ... and http(s) URLs are fetched only when this is on (never from non-public addresses)
    MEDIA_FETCH_URLS: bool = False
    # seconds a whole fetch may take (each read too)
    MEDIA_FETCH_TIMEOUT: PositiveFloat = 30.0
    # for tests and local development only: fetch from loopback addresses too (never private or link-local ones)
    MEDIA_FETCH_ALLOW_LOOPBACK: bool = False
    # largest accepted request body, in bytes (413 beyond it); uploads count towards it, so an upload larger
    # than this needs both limits raised
    MAX_REQUEST_BODY: PositiveInt = 101 * 1024 * 1024
    # seconds a synchronous route may run before it answers 504 (None: no limit)
    REQUEST_TIMEOUT: PositiveFloat | None = 300.0
    # a query route's call runs on the event loop's own thread, without the hop to the call pool, when no other
    # request is in flight and the route's last call took at most this many seconds (pxtserve.inline_reads;
    # 0: always on the pool). Such a call cannot time out, and the loop serves nothing else while it runs
    INLINE_READ_SECONDS: NonNegativeFloat = 0.01
    # seconds each /readyz check (Pixeltable, Django's database) may take before it counts as "timeout"
    READY_CHECK_TIMEOUT: PositiveFloat = 3.0
    # seconds `serve` lets in-flight requests finish after SIGTERM/Ctrl-C before closing them
    SHUTDOWN_GRACE_SECONDS: NonNegativeInt = 30
    # connections (pxtserve.connections, pxtserve.server.uvicorn_options): seconds from a connection's start, or
    # a keep-alive request's first byte, to the end of its head (408 beyond); and every REQUEST_BODY_TIMEOUT
    # seconds of a body must bring REQUEST_BODY_MIN_BYTES of it (408 otherwise)
    REQUEST_HEAD_TIMEOUT: PositiveFloat = 10.0
    REQUEST_BODY_TIMEOUT: PositiveFloat = 30.0
    REQUEST_BODY_MIN_BYTES: PositiveInt = 1024
    # seconds an idle keep-alive connection is kept between requests
    KEEP_ALIVE_TIMEOUT: PositiveFloat = 5.0
    # bytes of request line and headers (431 beyond)
    MAX_REQUEST_HEAD: PositiveInt = 64 * 1024
    # open connections per server process (more are answered 503 and closed; `serve` raises its open-file
    # limit to fit), and the listen queue
    MAX_CONNECTIONS: PositiveInt = 2048
    LISTEN_BACKLOG: PositiveInt = 2048
    # the middleware of API requests (pxtserve.asgi): async-capable ones only, or each costs thread hops
    API_MIDDLEWARE: list[str] = [
        # outermost: its X-Request-ID and access line cover the JSON error responses ApiErrorsMiddleware makes
        # (it replaces Django's responses with new ones, and answers a bad Host before calling inward)
        "pxtserve.request_id.RequestIdMiddleware",
        # request metrics (pxtserve.metrics): outside ApiErrorsMiddleware, so they see its JSON errors' statuses
        "pxtserve.metrics.MetricsMiddleware",
        # a span per request when tracing is on (pxtserve.tracing); with it off, it leaves the chain at start
        "pxtserve.tracing.TracingMiddleware",
        "pxtserve.api_errors.ApiErrorsMiddleware",
        "pxtserve.headers.SecurityMiddleware",
        # django-cors-headers (natively async): its CORS_* settings; pxtserve's subclass answers requests without
        # an Origin header in fewer steps
        "pxtserve.headers.CorsMiddleware",
    ]
    # paths that keep Django's full handler and settings.MIDDLEWARE (STATIC_URL is added)
    FULL_DJANGO_PATHS: list[str] = ["/admin/"]
    # keys accepted by routes with auth = "api_key" (besides those in the service's api_keys_env variable)
    API_KEYS: list[str] = []
    # finished background jobs are deleted this long after they finish
    JOB_RETENTION_SECONDS: NonNegativeFloat = 7 * 24 * 3600.0
    # media made for responses (in-memory images of computed columns, compute routes' uploads) is kept this long
    MEDIA_OUTPUT_RETENTION_SECONDS: NonNegativeFloat = 7 * 24 * 3600.0
    # seconds a signed media URL (of a router with protected routes, pxtserve/media_signing.py) stays valid
    MEDIA_URL_TTL: PositiveInt = 3600
    # where files uploaded to background routes wait for a worker; default: <Pixeltable home>/pxtserve_job_uploads
    JOB_UPLOAD_DIR: Path | None = None
    # OpenTelemetry traces (pxtserve.tracing; needs pxtserve[otel]); PXTSERVE_OTEL=1 and `serve --otel` turn it on too
    OTEL: bool = False
    # GET <prefix>/metrics (Prometheus) and the metrics behind it (pxtserve.metrics); off: a 404, and no metric is kept
    METRICS: bool = True
    # every PixeltableRouter's JSON routes as MCP tools at <mount>/mcp (pxtserve.mcp_endpoint; needs pxtserve[mcp]);
    # a router's `mcp=` and a service's `mcp` field say otherwise for theirs
    MCP: bool = False
    # who may read /metrics: "service" (the service's own auth; anyone for a public service), "none" (anyone),
    # or a list of keys, sent as `Authorization: Bearer <key>` or `X-API-Key`, accepted instead of the service's
    METRICS_AUTH: Literal["service", "none"] | pydantic.conlist(str, min_length=1) = "service"  # type: ignore[valid-type]
    # background routes' webhook_url (pxtserve/jobs/webhooks.py): the HMAC-SHA256 key deliveries are signed with;
    # without one nothing is delivered (never unsigned; check pxtserve.W006)
    WEBHOOK_SECRET: pydantic.SecretStr | None = None
    # deliver to loopback, private and link-local addresses too (internal receivers); off: public addresses only
    WEBHOOK_ALLOW_PRIVATE: bool = False
    # attempts per delivery; the first retry waits WEBHOOK_RETRY_DELAY seconds, each later one twice the one before
    WEBHOOK_ATTEMPTS: PositiveInt = 5
    WEBHOOK_RETRY_DELAY: NonNegativeFloat = 1.0
    WEBHOOK_TIMEOUT: PositiveFloat = 10.0
    # where `serve` runs background jobs: "in-process" (threads of its web process, pxtserve/jobs/in_process.py),
    # "cluster" (a django-q2 cluster beside it, each job worker a process), "auto" (in-process with one web process)
    JOB_RUNNER: JobRunner = "auto"
    # background jobs waiting for a worker, all routes together, beyond which a submission is 429 (pxtserve/jobs/submit.py)
    MAX_PENDING_JOBS: PositiveInt = 1000
    # largest JSON input (the request's fields, uploads aside) a background job stores, in bytes (413 beyond it)
    MAX_JOB_INPUT_BYTES: PositiveInt = 1024 * 1024
    # /docs and /openapi.json behind the service's auth (off: public, whatever the service's auth)
    DOCS_AUTH: bool = False
    # seconds a writing route remembers an Idempotency-Key and its answer (pxtserve/idempotency.py)
    IDEMPOTENCY_TTL: PositiveFloat = 24 * 3600.0


def parse(raw: Any) -> Settings:
    """Settings from a PXTSERVE dict; any problem is a SettingsError naming the key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError(f"settings.PXTSERVE must be a dict, got {type(raw).__name__}")
    try:
        return Settings.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(
                    f"settings.PXTSERVE[{key!r}]: unknown setting (known: {', '.join(Settings.model_fields)})"
                )
            else:
                problems.append(f"settings.PXTSERVE[{key!r}]: {err['msg']} (got {err['input']!r})")
        raise SettingsError("; ".join(problems)) from None


_current: Settings | None = None
_lock = threading.Lock()


def settings() -> Settings:
    """The validated settings, read from django.conf.settings on first use."""
    global _current
    current = _current
    if current is None:
        with _lock:
            if _current is None:
                _current = parse(getattr(django_settings, "PXTSERVE", None))
            current = _current
    return current


def reload(*, setting: str = "PXTSERVE", **kwargs: Any) -> None:
    """Django's setting_changed receiver (connected by pxtserve.apps): read PXTSERVE again on next use."""
    global _current
    if setting == "PXTSERVE":
        with _lock:
            _current = None


# set by `manage.py serve` for the processes it starts (uvicorn workers, job workers)
SERVICE_JSON_ENV = "PXTSERVE_SERVICE_JSON"


def service_json_from_env() -> str | None:
    return os.environ.get(SERVICE_JSON_ENV)


def set_service_json_env(value: str) -> None:
    os.environ[SERVICE_JSON_ENV] = value


# tracing on for every process of a serve, whatever their settings say (`serve --otel` sets it)
OTEL_ENV = "PXTSERVE_OTEL"
# a file every process appends its finished spans to as JSON lines (the tests' exporter)
OTEL_TEST_FILE_ENV = "PXTSERVE_OTEL_TEST_FILE"


def otel_enabled() -> bool:
    return settings().OTEL or os.environ.get(OTEL_ENV) == "1"


def enable_otel_env() -> None:
    os.environ[OTEL_ENV] = "1"


def otel_test_file() -> str | None:
    return os.environ.get(OTEL_TEST_FILE_ENV) or None


def expand_env_vars(text: str) -> str:
    """Expand ${NAME} references; an undefined variable is an error naming it."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise KeyError(name)
        return os.environ[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", replace, text)


def api_keys(env_var: str | None = None) -> list[str]:
    """The API keys: settings.PXTSERVE["API_KEYS"] plus the comma-separated keys in `env_var`."""
    keys = [k for k in settings().API_KEYS if k]
    if env_var:
        keys += [k.strip() for k in os.environ.get(env_var, "").split(",") if k.strip()]
    return keys
