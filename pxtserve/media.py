"""Media values in responses: local files become absolute URLs to the media view,
and the media view serves files from the media roots only (pxtserve.media_store).
"""

from __future__ import annotations

import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

import PIL.Image
from django.http import Http404, HttpRequest
from django.urls import reverse

from pxtserve.media_signing import signed_query
from pxtserve.media_store import media_roots, save_image


def _is_inside_roots(resolved: Path) -> bool:
    _, roots = media_roots()
    return any(resolved == root or root in resolved.parents for root in roots)


def local_media_path(value: str) -> Path | None:
    """The local file a media value names (a file:// URL or an absolute path), or None."""
    if value.startswith("file:"):
        parsed = urllib.parse.urlparse(value)
        return Path(urllib.parse.unquote(parsed.path))
    if os.path.isabs(value):
        return Path(value)
    return None


class MediaUrls:
    """Builds absolute URLs to the media view for one request.

    The URL is reversed in the request's own URL namespace, so it is right under
    whatever prefix the router is mounted at; and on the request's thread, since
    reverse() depends on that thread's URLconf and script prefix (the rendering of
    rows happens later, on a pool thread).
    """

    def __init__(
        self, request: HttpRequest | None, url_name: str, base_url: str | None = None, *, signed: bool = False
    ) -> None:
        self._base = base_url
        # the URLs of a protected router's routes carry a signature (pxtserve.media_signing)
        self._signed = signed
        self._now = time.time() if signed else 0.0
        if self._base is None and request is not None:
            namespace = request.resolver_match.namespace if request.resolver_match else ""
            name = f"{namespace}:{url_name}" if namespace else url_name
            self._base = request.build_absolute_uri(reverse(name, kwargs={"path": "_"}))[:-1]

    @property
    def base_url(self) -> str | None:
        return self._base

    def url_for(self, value: Any) -> Any:
        """A media value as the client should see it: a URL string (or None)."""
        if value is None:
            return None
        if isinstance(value, PIL.Image.Image):
            value = save_image(value).as_uri()
        if not isinstance(value, str):
            return value
        path = local_media_path(value)
        if path is None:
            return value  # an http(s) or object-store URL the client can use as is
        resolved = path.resolve()
        if not _is_inside_roots(resolved) or self._base is None:
            return value
        home, _ = media_roots()
        rel = resolved.relative_to(home).as_posix()
        url = self._base + urllib.parse.quote(rel, safe="/")
        return f"{url}?{signed_query(rel, self._now)}" if self._signed else url


def local_file_for(value: Any) -> Path | None:
    """The local file behind a media value, for file responses."""
    if isinstance(value, PIL.Image.Image):
        value = save_image(value).as_uri()
    if not isinstance(value, str):
        return None
    path = local_media_path(value)
    return path if path is not None and path.is_file() else None


def resolve_media_request(rel_path: str) -> Path:
    """The file a media URL names, or Http404 when it lies outside the media directories.

    Resolving first (symlinks and `..` included) and then checking containment
    is what keeps `../`, absolute paths and symlinks out of the store from
    escaping it.
    """
    home, _ = media_roots()
    if not rel_path or rel_path.startswith("/") or "\x00" in rel_path:
        raise Http404("not found")
    resolved = (home / rel_path).resolve()
    if not _is_inside_roots(resolved) or not resolved.is_file():
        raise Http404("not found")
    return resolved
