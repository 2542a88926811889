"""Warnings for a site that looks deployed but still runs on the local-use defaults."""

from __future__ import annotations

from django.conf import settings

LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1", "testserver"}


def deployment_warnings() -> list[str]:
    """What is unsafe about these settings for a site reachable by other hosts."""
    public_hosts = [h for h in settings.ALLOWED_HOSTS if h not in LOCAL_HOSTS]
    if not public_hosts:
        return []  # local use: the defaults are fine
    warnings = []
    if getattr(settings, "SECRET_KEY_IS_DEFAULT", False):
        warnings.append(
            f"ALLOWED_HOSTS names {', '.join(public_hosts)} but SECRET_KEY is the built-in development key: "
            "set DJANGO_SECRET_KEY (sessions and admin logins can be forged with the default)"
        )
    if settings.DEBUG:
        warnings.append(f"DEBUG is on while ALLOWED_HOSTS names {', '.join(public_hosts)}: set DJANGO_DEBUG=0")
    if "*" in public_hosts:
        warnings.append("ALLOWED_HOSTS is '*': any Host header is accepted")
    return warnings
