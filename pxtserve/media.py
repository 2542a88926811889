"""Media values in responses: local files become absolute URLs to the media view,
and the media view serves files from the media roots only (pxtserve.media_store).
"""

from __future__ import annotations

import mimetypes
import os
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import PIL.Image
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotModified,
    StreamingHttpResponse,
)
from django.urls import reverse
from django.utils.http import http_date

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

    def __init__(self, request: HttpRequest | None, url_name: str, base_url: str | None = None) -> None:
        self._base = base_url
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
        return self._base + urllib.parse.quote(rel, safe="/")


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


def file_response(path: Path, *, as_attachment: bool = False) -> FileResponse:
    content_type, _ = mimetypes.guess_type(path.name)
    return FileResponse(
        open(path, "rb"),
        content_type=content_type or "application/octet-stream",
        as_attachment=as_attachment,
        filename=path.name,
    )


_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def media_file_response(request: HttpRequest, path: Path) -> HttpResponse:
    """A media file with what players and caches need: ETag/Last-Modified (304 on a match),
    single byte ranges (206/416) and HEAD."""
    stat = path.stat()
    size = stat.st_size
    etag = f'"{stat.st_mtime_ns:x}-{size:x}"'
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {
        "ETag": etag,
        "Last-Modified": http_date(stat.st_mtime),
        "Accept-Ranges": "bytes",
        # media files are write-once (content-addressed names), so caching them is safe
        "Cache-Control": "private, max-age=3600",
    }
    if request.headers.get("If-None-Match") in (etag, "*"):
        return HttpResponseNotModified(headers=headers)
    start, end = 0, size - 1
    status = 200
    range_header = request.headers.get("Range")
    if range_header and request.headers.get("If-Range", etag) == etag:
        match = _RANGE_RE.match(range_header.strip())
        if match and (match.group(1) or match.group(2)):
            first, last = match.group(1), match.group(2)
            if first:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            else:  # a suffix range: the last N bytes
                start, end = max(size - int(last), 0), size - 1
            if start >= size or start > end:
                return HttpResponse(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = end - start + 1
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return HttpResponse(status=status, content_type=content_type, headers=headers)
    return StreamingHttpResponse(
        _read_range(path, start, length), status=status, content_type=content_type, headers=headers
    )


def _read_range(path: Path, start: int, length: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        while length > 0:
            data = f.read(min(chunk, length))
            if not data:
                return
            length -= len(data)
            yield data
