"""Media and file responses streamed from disk in bounded memory.

Django's ASGI handler consumes a synchronous iterator with `sync_to_async(list)`: the
whole file in memory before the first byte is sent. These responses iterate
asynchronously instead, reading one chunk at a time on a small pool of reader threads,
so a stalled client holds neither a thread (its response waits in `send`, on the event
loop) nor more than a chunk or two of the file; and a client that goes away stops the
reading: its request task is cancelled, and the response's close() closes the file.

Only image, video, audio and PDF types are served inline; anything else (HTML, SVG,
XHTML, scripts, ...) is an attachment, and every media response is sandboxed by its
Content-Security-Policy, so a stored file cannot run script on the site's origin.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, StreamingHttpResponse
from django.utils.http import content_disposition_header, http_date

CHUNK_SIZE = 256 * 1024
# reads are short (one chunk each); a few threads keep many downloads going
_READER_THREADS = 4
_readers = ThreadPoolExecutor(max_workers=_READER_THREADS, thread_name_prefix="pxtserve-media")

# a byte position longer than this is beyond any file (and int() refuses numbers past 4,300 digits)
_MAX_POSITION_DIGITS = 18
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")

SANDBOX_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "X-Content-Type-Options": "nosniff",
}


def content_type_of(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def is_inline_type(content_type: str) -> bool:
    """Types a browser shows without running script from them; SVG can carry script, so it is not one."""
    if content_type == "image/svg+xml":
        return False
    return content_type.startswith(("image/", "video/", "audio/")) or content_type == "application/pdf"


def _file_headers(path: Path, content_type: str, *, as_attachment: bool = False) -> dict[str, str]:
    inline = not as_attachment and is_inline_type(content_type)
    return {**SANDBOX_HEADERS, "Content-Disposition": content_disposition_header(not inline, path.name) or ""}


async def run_on_reader(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_readers, fn, *args)


class FileChunks:
    """`length` bytes of an open file from `start`, as an async iterator of chunks read on the reader threads.

    close() (called by the response's close()) may come while a chunk is being read on a
    reader thread, after the request task was cancelled: the file is then closed by
    that thread when its read ends, never under it.
    """

    def __init__(self, fd: int, start: int, length: int, chunk_size: int = CHUNK_SIZE) -> None:
        self._fd = fd
        self._offset = start
        self._remaining = length
        self._chunk_size = chunk_size
        self._lock = threading.Lock()
        self._reading = False
        self._closed = False

    def __aiter__(self) -> FileChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._remaining <= 0:
            self.close()
            raise StopAsyncIteration
        data = await run_on_reader(self._read, min(self._chunk_size, self._remaining))
        if not data:  # the file shrank under us: end the body early rather than wait
            self.close()
            raise StopAsyncIteration
        self._offset += len(data)
        self._remaining -= len(data)
        return data

    def _read(self, size: int) -> bytes:
        with self._lock:
            if self._closed:
                return b""
            self._reading = True
        try:
            return os.pread(self._fd, size, self._offset)
        finally:
            with self._lock:
                self._reading = False
                if self._closed:
                    os.close(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self._reading:
                os.close(self._fd)

    def __del__(self) -> None:
        # a response dropped unsent (its request cancelled between the view and the send) is never closed
        self.close()


@dataclass(frozen=True)
class _OpenFile:
    fd: int
    size: int
    mtime: float
    mtime_ns: int


def _open(path: Path) -> _OpenFile:
    fd = os.open(path, os.O_RDONLY)
    stat = os.fstat(fd)
    return _OpenFile(fd, stat.st_size, stat.st_mtime, stat.st_mtime_ns)


def _close_opened(future: asyncio.Future[_OpenFile]) -> None:
    if not future.cancelled() and future.exception() is None:
        os.close(future.result().fd)


async def _open_off_loop(path: Path) -> _OpenFile:
    """Open and stat `path` on a reader thread; a request cancelled meanwhile (its client left) closes the file
    the thread opened for it."""
    opening = asyncio.ensure_future(run_on_reader(_open, path))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_opened)
        raise


def _position(digits: str) -> int | None:
    """A Range position, or None when it has more digits than any file has bytes."""
    return int(digits) if len(digits) <= _MAX_POSITION_DIGITS else None


def byte_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """The (start, end) of a single `bytes=` range; None to ignore the header (malformed, several ranges);
    False when it cannot be satisfied (416)."""
    match = _RANGE_RE.match(header.strip())
    if match and size == 0:
        return False
    if not match or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first:
        start = _position(first)
        end = _position(last) if last else None
        if start is None or start >= size:
            return False
        end = size - 1 if end is None else min(end, size - 1)
        return (start, end) if start <= end else False
    suffix = _position(last)
    if suffix == 0:
        return False
    return (0 if suffix is None else max(size - suffix, 0), size - 1)


async def file_response(path: Path, *, as_attachment: bool = False) -> StreamingHttpResponse:
    """A whole file (a `return_fileresponse` route's answer), streamed."""
    opened = await _open_off_loop(path)
    content_type = content_type_of(path)
    headers = {**_file_headers(path, content_type, as_attachment=as_attachment), "Content-Length": str(opened.size)}
    return StreamingHttpResponse(FileChunks(opened.fd, 0, opened.size), content_type=content_type, headers=headers)


async def media_file_response(request: HttpRequest, path: Path) -> HttpResponse:
    """A media file with what players and caches need: ETag/Last-Modified (304 on a match),
    single byte ranges (206/416) and HEAD."""
    opened = await _open_off_loop(path)
    try:
        response = _media_response(request, path, opened)
    except BaseException:
        os.close(opened.fd)
        raise
    if not response.streaming:
        os.close(opened.fd)
    return response


def _media_response(request: HttpRequest, path: Path, opened: _OpenFile) -> HttpResponse:
    size = opened.size
    etag = f'"{opened.mtime_ns:x}-{size:x}"'
    content_type = content_type_of(path)
    headers = {
        **_file_headers(path, content_type),
        "ETag": etag,
        "Last-Modified": http_date(opened.mtime),
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
        wanted = byte_range(range_header, size)
        if wanted is False:
            return HttpResponse(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
        if wanted is not None:
            start, end = wanted
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = end - start + 1
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return HttpResponse(status=status, content_type=content_type, headers=headers)
    return StreamingHttpResponse(
        FileChunks(opened.fd, start, length), status=status, content_type=content_type, headers=headers
    )
