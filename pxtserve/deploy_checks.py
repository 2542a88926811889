"""Deploy checks (`manage.py check --deploy`, and `serve` before it serves): a site that looks deployed but
still runs on the local-use defaults. Registered when the app is ready (pxtserve.apps)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning

from pxtserve.checks import TAG

LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1", "testserver"}


def _public_hosts() -> list[str]:
    """The allowed hosts other machines would use; none means local use, where the defaults are fine."""
    return [h for h in settings.ALLOWED_HOSTS if h not in LOCAL_HOSTS]


@register(TAG, Tags.security, deploy=True)
def check_default_secret_key(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    public_hosts = _public_hosts()
    if not public_hosts or not getattr(settings, "SECRET_KEY_IS_DEFAULT", False):
        return []
    return [
        CheckWarning(
            f"ALLOWED_HOSTS names {', '.join(public_hosts)} but SECRET_KEY is the built-in development key: "
            "set DJANGO_SECRET_KEY (sessions and admin logins can be forged with the default)",
            id="pxtserve.W003",
        )
    ]


@register(TAG, Tags.security, deploy=True)
def check_debug(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    public_hosts = _public_hosts()
    if not public_hosts or not settings.DEBUG:
        return []
    return [
        CheckWarning(
            f"DEBUG is on while ALLOWED_HOSTS names {', '.join(public_hosts)}: set DJANGO_DEBUG=0", id="pxtserve.W004"
        )
    ]


@register(TAG, Tags.security, deploy=True)
def check_any_host(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    if "*" not in settings.ALLOWED_HOSTS:
        return []
    return [CheckWarning("ALLOWED_HOSTS is '*': any Host header is accepted", id="pxtserve.W005")]
