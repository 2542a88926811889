"""Multipart uploads parsed while they arrive, each file bounded by MAX_UPLOAD_SIZE as it is received.

Django's ASGI handler spools the whole body before anything runs, and its multipart parser then copies
each file again, so an oversized upload is refused only once all of it is on disk. Here the parser reads
straight from ASGI `receive` (on a worker thread: Django's parser is synchronous), through Django's own
upload handlers (settings.FILE_UPLOAD_HANDLERS: small files in memory, larger ones in a temporary file)
behind one that counts each file's bytes and stops the request as soon as one passes the limit; nothing
after that is read or written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from django.core.exceptions import RequestAborted
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest

from pxtserve import conf
from pxtserve.errors import UploadTooLarge

Receive = Callable[[], Awaitable[dict[str, Any]]]


class ReceiveStream:
    """A blocking file-like reader of an ASGI request body, for a worker thread (never the event loop's)."""

    def __init__(self, receive: Receive) -> None:
        self._next = async_to_sync(receive)
        self._buffer = b""
        self._more = True

    def read(self, size: int = -1) -> bytes:
        while self._more and (size < 0 or len(self._buffer) < size):
            self._receive()
        return self._take(len(self._buffer) if size < 0 else size)

    def readline(self, size: int = -1) -> bytes:
        """Django's parser ends by iterating the request over lines (to drain what it did not use)."""
        while self._more and b"\n" not in self._buffer and (size < 0 or len(self._buffer) < size):
            self._receive()
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        return self._take(end if size < 0 else min(end, size))

    def _receive(self) -> None:
        message = self._next()
        if message["type"] == "http.disconnect":
            raise RequestAborted()
        self._buffer += message.get("body", b"")
        self._more = message.get("more_body", False)

    def _take(self, size: int) -> bytes:
        chunk, self._buffer = self._buffer[:size], self._buffer[size:]
        return chunk

    def close(self) -> None:
        self._buffer, self._more = b"", False


class UploadSizeLimit(FileUploadHandler):
    """First of the request's upload handlers: refuses a file as soon as it passes `limit` bytes."""

    def __init__(self, limit: int, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            raise UploadTooLarge(self.field_name, self.limit)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler makes the file


def parse_uploads(request: HttpRequest) -> None:
    """Parse a multipart request's fields and files now, reading its body from its stream (a ReceiveStream).

    Any error of the parse (the size limits, a malformed body, a client that left) propagates, and the
    temporary files of the handlers are removed.
    """
    handlers = [UploadSizeLimit(conf.settings().MAX_UPLOAD_SIZE, request), *request.upload_handlers]
    request.upload_handlers = handlers
    try:
        request.POST  # noqa: B018 (parses POST and FILES)
    except BaseException:
        for handler in handlers:
            partial = getattr(handler, "file", None)  # TemporaryFileUploadHandler's file being written
            if partial is not None:
                partial.close()
        raise
