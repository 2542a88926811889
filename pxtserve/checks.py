"""pxtserve's Django system checks (`manage.py check`): the apps it needs, its settings, the service file
and the directories those settings name. Registered when the app is ready (pxtserve.apps).

Every check here is cheap and starts nothing: they run on every manage.py command, so the service file
is only read and validated, never built (building it would start Pixeltable and import the service's
modules). The deploy checks are in pxtserve.deploy_checks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Tags, register, run_checks
from django.core.checks import Warning as CheckWarning

from pxtserve import conf
from pxtserve.errors import ServiceConfigError, SettingsError

# every pxtserve check carries it: `manage.py check --tag pxtserve`
TAG = "pxtserve"

# the service-file check's id: `serve` leaves it out (below)
SERVICE_FILE_ERROR = "pxtserve.E004"
SERVICE_BUILD_ERROR = "pxtserve.E005"

_REQUIRED_APPS = {
    "ninja": ("pxtserve.E001", "the API is a Django Ninja NinjaAPI (its docs page needs the app's templates)"),
    "django_q": ("pxtserve.E002", "background routes run their jobs on django-q2 (its models, its qcluster command)"),
}


@register(TAG)
def check_required_apps(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    return [
        Error(f"{app!r} is not in INSTALLED_APPS: {why}", hint=f'add "{app}" to INSTALLED_APPS', id=check_id)
        for app, (check_id, why) in _REQUIRED_APPS.items()
        if not apps.is_installed(app)
    ]


@register(TAG)
def check_settings(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    # parsed afresh, not through conf.settings(): what Django holds now, even when it was assigned without the
    # setting_changed signal that makes conf re-read it (at start, pxtserve.apps has stopped Django on a bad one)
    try:
        conf.parse(getattr(django_settings, "PXTSERVE", None))
    except SettingsError as exc:
        return [Error(str(exc), hint="pxtserve/conf.py lists every setting with its type", id="pxtserve.E003")]
    return []


def _settings() -> conf.Settings | None:
    """The settings, or None when they do not parse (check_settings reports that, once)."""
    try:
        return conf.settings()
    except SettingsError:
        return None


@register(TAG)
def check_service_file(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    current = _settings()
    # a process serve started serves the service serve passed it, whatever the settings name (pxtserve.service)
    if current is None or current.CONFIG is None or conf.service_json_from_env():
        return []
    # imported here: the route declarations import Pixeltable, which no command without a service file needs
    from pxtserve.config import load_service

    try:
        load_service(current.CONFIG, current.SERVICE)
    except ServiceConfigError as exc:
        message = str(exc)
    except OSError as exc:  # a directory, an unreadable file: the loader only words a missing one
        message = f"{current.CONFIG}: cannot be read ({exc.strerror})"
    else:
        return []
    return [
        Error(
            message,
            hint="fix the file, or change PXTSERVE['CONFIG'] / PXTSERVE['SERVICE'] (PXTSERVE_CONFIG, PXTSERVE_SERVICE)",
            id=SERVICE_FILE_ERROR,
        )
    ]


@register(Tags.urls)
def check_service_builds(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """The configured service builds (its modules import, its tables open, its routes register).

    Tagged as a URL check, as Django's own URLconf check, which builds it the same way: `serve`'s checks
    (serve_issues) leave it out, since serve builds the service its command line names, never this one.
    """
    current = _settings()
    if current is None or current.CONFIG is None or conf.service_json_from_env():
        return []
    # imported here: building the service imports Pixeltable, which no command without a service file needs
    from pxtserve.config import load_service
    from pxtserve.service import active_service

    try:
        load_service(current.CONFIG, current.SERVICE)
    except (ServiceConfigError, OSError):
        return []  # check_service_file reports it
    try:
        active_service()
    except ServiceConfigError as exc:
        return [Error(str(exc), hint="its paths answer 503 until it builds", id=SERVICE_BUILD_ERROR)]
    return []


@register(TAG)
def check_directories(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    current = _settings()
    if current is None:
        return []
    issues: list[CheckMessage] = [
        CheckWarning(
            f"PXTSERVE['MEDIA_INPUT_DIRS'] names {directory!r}, which is not an existing directory: "
            "no media path is accepted from it",
            hint="create it, or remove it from PXTSERVE['MEDIA_INPUT_DIRS'] (PXTSERVE_MEDIA_INPUT_DIRS)",
            id="pxtserve.W001",
        )
        for directory in current.MEDIA_INPUT_DIRS
        if not Path(directory).is_dir()
    ]
    # only a directory set here: the default lies under Pixeltable's home, which finding would start Pixeltable
    upload_dir = current.JOB_UPLOAD_DIR
    if upload_dir is not None and not _can_write(upload_dir):
        issues.append(
            CheckWarning(
                f"PXTSERVE['JOB_UPLOAD_DIR'] {str(upload_dir)!r} is not a writable directory: "
                "uploads to background routes will fail",
                hint="make it writable by this user, or set another directory",
                id="pxtserve.W002",
            )
        )
    return issues


def _can_write(directory: Path) -> bool:
    """Whether files can be created in `directory`, or it can be created (submits make it, parents included)."""
    existing = directory.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)


@register(TAG)
def check_webhook_secret(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    current = _settings()
    if current is None or current.WEBHOOK_SECRET is not None:
        return []
    routes = _webhook_routes(current)
    if not routes:
        return []
    from pxtserve.jobs.webhooks import unsigned_routes_message

    return [
        CheckWarning(
            unsigned_routes_message(routes),
            hint="set PXTSERVE['WEBHOOK_SECRET'] (PXTSERVE_WEBHOOK_SECRET); receivers check X-Pxtserve-Signature with it",
            id="pxtserve.W006",
        )
    ]


def _webhook_routes(current: conf.Settings) -> list[str]:
    """The paths of the webhook routes known here: routers built so far, and PXTSERVE['CONFIG']'s (read, not built).

    `serve` runs its checks before it reads its service: its router logs the same warning as it adds such a route.
    """
    from pxtserve import registry

    found = {op.path for router in registry.live_routers() for op in router.operations if op.spec.webhook_url}
    if current.CONFIG is not None and not conf.service_json_from_env():
        from pxtserve.config import load_service

        try:
            service = load_service(current.CONFIG, current.SERVICE)
        except (ServiceConfigError, OSError):
            pass  # check_service_file reports it
        else:
            found |= {route.path for route in service.routes if route.webhook_url}
    return sorted(found)


def serve_issues() -> list[CheckMessage]:
    """The checks `manage.py serve` runs before serving: pxtserve's own and its deploy checks, not silenced.

    Not Django's URL checks: they would build the service through the URLconf before serve has chosen it.
    Nor the service-file check: serve serves the service its command line names, never PXTSERVE['CONFIG'].
    """
    issues = run_checks(tags=[TAG], include_deployment_checks=True)
    return [issue for issue in issues if issue.id != SERVICE_FILE_ERROR and not issue.is_silenced()]


def issue_text(issue: CheckMessage) -> str:
    """One check's message on one line, as serve prints it: the text, its hint, and the id that silences it."""
    hint = f" HINT: {issue.hint}" if issue.hint else ""
    return f"{issue.msg}{hint} [{issue.id}]"
