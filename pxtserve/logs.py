"""One logging configuration for every process of a serve: the web server(s) and the job workers.

`logging_config()` builds the dictConfig: one console handler on stderr whose records
all carry the request id (RequestIdFilter, "-" outside a request), as text
(`time level logger [request_id] message`) or as one JSON object per line. The
standalone site's settings use it (LOGGING, read from PXTSERVE_LOG_LEVEL /
PXTSERVE_LOG_FORMAT / PXTSERVE_ACCESS_LOG); `serve` sets those variables from its
options, so the processes it starts (uvicorn's --workers, the job workers' child)
configure themselves alike when they set Django up, and applies the options to its
own process. uvicorn is given no logging config of its own (`uvicorn_options()`), so
it installs no formatters over these.

Imported by settings modules: nothing here imports Django at module level.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import time
from collections.abc import Mapping
from typing import Any

from pxtserve.request_id import current

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
LEVEL_ENV = "PXTSERVE_LOG_LEVEL"
FORMAT_ENV = "PXTSERVE_LOG_FORMAT"
ACCESS_LOG_ENV = "PXTSERVE_ACCESS_LOG"

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

# the attributes every LogRecord has: anything else on a record came from `extra=` and goes into its JSON object
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id", "taskName"}


class RequestIdFilter(logging.Filter):
    """Put the current request's id on every record the handler sees (on the handler: records that propagate
    from any logger pass it, where a logger's filter sees only its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current() or "-"
        return True


class _UtcTimeMixin:
    """ISO 8601 times in UTC with milliseconds: one ordering across processes and hosts, whatever their TZ."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class TextFormatter(_UtcTimeMixin, logging.Formatter):
    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        # the default keeps a record that bypassed the filter (a handler of someone else's) formattable
        super().__init__(fmt, defaults={"request_id": "-"})


class JsonFormatter(_UtcTimeMixin, logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, the record's scalar `extra=` fields
    (the access line's method, path, status, duration_ms), and exc_info (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or "-",
        }
        for key, value in record.__dict__.items():
            # scalars only: Django's django.request records carry the request object, which is no log field
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and isinstance(value, (str, int, float, bool)):
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    normalized = value.strip().lower()
    if normalized not in allowed:
        raise ValueError(f"{what}: {value!r} is not one of {', '.join(allowed)}")
    return normalized


def logging_config(level: str = "info", fmt: str = "text", *, access_log: bool = True) -> dict[str, Any]:
    """The dictConfig of a pxtserve process: everything to one stderr handler, at `level`, as `fmt`."""
    config: dict[str, Any] = {
        "version": 1,
        # loggers made before this (at import) keep logging: disabling them would hide their errors
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "pxtserve.logs.RequestIdFilter"}},
        "formatters": {
            "text": {"()": "pxtserve.logs.TextFormatter"},
            "json": {"()": "pxtserve.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["request_id"],
                "formatter": "text",
            }
        },
        "root": {"handlers": ["console"], "level": "WARNING"},
        "loggers": {
            "pxtserve": {"handlers": [], "propagate": True},
            # Django's defaults give "django" a console handler that prints with DEBUG on only, which left a
            # 500's traceback (django.request, ERROR) unlogged with DEBUG off: no handlers here, so it reaches root
            "django": {"handlers": [], "propagate": True},
            # 4xx are in the access line already; Django's "Not Found: /x" warnings would double them
            "django.request": {"handlers": [], "level": "ERROR", "propagate": True},
            # with a handler up the tree at import, django-q2 adds no handler (and format) of its own
            "django-q": {"handlers": [], "propagate": True},
            # Pixeltable, when it starts, adds its log file to "uvicorn" and stops it propagating: a handler of
            # its own keeps uvicorn's lines ("Uvicorn running on ...", its errors) on stderr regardless
            "uvicorn": {"handlers": ["console"], "propagate": False},
            # uvicorn's access line runs outside the request's context (no id): pxtserve.access logs it instead
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
    apply_options(config, level, fmt, access_log=access_log)
    return config


# the loggers the chosen level is for: the server's own; other libraries log warnings and errors only (below
# WARNING they say what they do, not what goes wrong: Pixeltable's embedded PostgreSQL prints initdb's output),
# everything at debug
_SERVER_LOGGERS = ("pxtserve", "django", "django-q", "uvicorn")


def apply_options(config: dict[str, Any], level: str, fmt: str, *, access_log: bool) -> None:
    """Set the level, format and access log of a config logging_config() built (or a site extended)."""
    level_name = _choice(level, LEVELS, "log level").upper()
    config["handlers"]["console"]["formatter"] = _choice(fmt, FORMATS, "log format")
    root_level = max(logging.getLevelName(level_name), logging.WARNING) if level_name != "DEBUG" else logging.DEBUG
    config["root"]["level"] = logging.getLevelName(root_level)
    loggers = config.setdefault("loggers", {})
    for name in _SERVER_LOGGERS:
        # "uvicorn" too: Pixeltable sets it to INFO unless it has a level
        loggers.setdefault(name, {"handlers": [], "propagate": True})["level"] = level_name
    access = loggers.setdefault("pxtserve.access", {})
    if access_log:
        access.pop("level", None)  # the chosen level, through "pxtserve"
    else:
        access["level"] = "WARNING"  # its lines are INFO


def logging_config_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """logging_config() with PXTSERVE_LOG_LEVEL (default info), PXTSERVE_LOG_FORMAT (default text) and
    PXTSERVE_ACCESS_LOG ("0": no line per request): what `serve` sets for the processes it starts."""
    try:
        return logging_config(
            environ.get(LEVEL_ENV) or "info",
            environ.get(FORMAT_ENV) or "text",
            access_log=environ.get(ACCESS_LOG_ENV, "1") != "0",
        )
    except ValueError as exc:
        raise ValueError(f"{exc} (from the environment: {LEVEL_ENV}, {FORMAT_ENV})") from None


def is_pxtserve_config(config: Any) -> bool:
    """Whether a settings.LOGGING is logging_config()'s (the standalone site's, or a site's that extends it)."""
    if not isinstance(config, dict):
        return False
    return config.get("filters", {}).get("request_id", {}).get("()") == "pxtserve.logs.RequestIdFilter" and (
        "console" in config.get("handlers", {})
    )


def configure_serve(level: str | None, fmt: str | None, *, access_log: bool) -> None:
    """`serve`'s --log-level / --log-format / --no-access-log, for this process and the ones it starts.

    The environment carries them to the children (their settings read it). This process read its settings
    before the options were known: they are applied to settings.LOGGING itself, when it is pxtserve's (a
    later django.setup(), as pxtserve.asgi's, configures logging from it again), and then to logging. A site
    with a logging config of its own keeps it; only the access line follows --no-access-log there.
    Called before Pixeltable starts: dictConfig closes the handlers it replaces, Pixeltable's log file among them.
    """
    from django.conf import settings

    if level is not None:
        os.environ[LEVEL_ENV] = _choice(level, LEVELS, "--log-level")
    if fmt is not None:
        os.environ[FORMAT_ENV] = _choice(fmt, FORMATS, "--log-format")
    if not access_log:
        os.environ[ACCESS_LOG_ENV] = "0"
    if is_pxtserve_config(settings.LOGGING):
        apply_options(
            settings.LOGGING,
            os.environ.get(LEVEL_ENV) or "info",
            os.environ.get(FORMAT_ENV) or "text",
            access_log=os.environ.get(ACCESS_LOG_ENV, "1") != "0",
        )
        logging.config.dictConfig(settings.LOGGING)
    elif not access_log:
        logging.getLogger("pxtserve.access").setLevel(logging.WARNING)


def uvicorn_options() -> dict[str, Any]:
    """uvicorn.run's logging arguments: none of its own over pxtserve's config; its default for a site's own."""
    from django.conf import settings

    if is_pxtserve_config(settings.LOGGING):
        # log_config=None: uvicorn installs no handlers or formatters; log_level=None: it sets no levels either
        return {"log_config": None, "log_level": None}
    from uvicorn.config import LOGGING_CONFIG

    return {"log_config": LOGGING_CONFIG, "log_level": (os.environ.get(LEVEL_ENV) or "info")}
