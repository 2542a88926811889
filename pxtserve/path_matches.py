"""URL resolution of API requests, with the matches of literal paths kept.

Django's resolver tries the URLconf's patterns in order, a regex each, and builds a
ResolverMatch at every level of `include()`, for every request. Most API paths are
literal (`/lookup`, `/api/notes/search`: no converter, no regex): their match is the
same for every request, so it is kept once Django has made it, keyed by the path.

Only a match whose route, as Django joined it, is the request's path itself is kept:
the path then names no id or other variable part, so the keys are at most the
URLconf's literal routes (a bounded set, whatever URLs clients send). Paths with
converters or regexes, and 404s, go through Django's resolver every time. A request
with a URLconf of its own (`request.urlconf`, set by a middleware) is never served
from, nor adds to, the kept matches, which are per root resolver: a changed
ROOT_URLCONF (override_settings in a test) starts from none.
"""

from __future__ import annotations

from typing import Any

from django.urls import ResolverMatch, get_resolver

# (the root resolver the matches came from, {path_info: its match})
_kept: tuple[Any, dict[str, ResolverMatch]] = (None, {})


def resolve_path(request: Any) -> ResolverMatch:
    """Django's ResolverMatch for `request.path_info` (Resolver404 when none), from the kept ones when literal."""
    urlconf = getattr(request, "urlconf", None)
    resolver = get_resolver(urlconf)
    path = request.path_info
    if urlconf is not None:
        return resolver.resolve(path)
    global _kept
    owner, matches = _kept
    if owner is not resolver:
        matches = {}
        _kept = (resolver, matches)
    match = matches.get(path)
    if match is None:
        match = resolver.resolve(path)
        if match.route is not None and path == "/" + match.route:
            matches[path] = match
    return match
