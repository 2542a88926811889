"""Multipart file uploads: each upload becomes a file in Pixeltable's tmp directory,
named with the upload's extension, whose path is the column (or parameter) value.

Django already streams uploads larger than FILE_UPLOAD_MAX_MEMORY_SIZE to disk, so
a large file never sits wholly in memory; here it is copied in chunks.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

from django.core.files.uploadedfile import UploadedFile

from pxtserve import conf
from pxtserve.errors import ApiError
from pxtserve.pxt_internals import tmp_file_path


def _extension(upload: UploadedFile) -> str:
    ext = os.path.splitext(upload.name or "")[1]
    if not ext and upload.content_type:
        ext = mimetypes.guess_extension(upload.content_type) or ""
    # the extension is only a hint for Pixeltable's media type detection; keep it tame
    return ext if ext[1:].isalnum() and len(ext) <= 10 else ""


def save_upload(field: str, upload: UploadedFile) -> Path:
    """Write one upload to Pixeltable's tmp dir; 413 beyond the configured size."""
    limit = conf.settings().MAX_UPLOAD_SIZE
    if upload.size is not None and upload.size > limit:
        raise ApiError(413, "UPLOAD_TOO_LARGE", f"upload {field!r} is {upload.size} bytes; the limit is {limit} bytes")
    if not upload.size:
        raise ApiError(422, "EMPTY_UPLOAD", f"upload {field!r} is empty")
    dest = tmp_file_path(_extension(upload))
    with open(dest, "wb") as out:
        out.writelines(upload.chunks())
    return dest


def save_uploads(uploads: dict[str, UploadedFile]) -> dict[str, Path]:
    """Save every upload of a request; on any failure remove those already written."""
    saved: dict[str, Path] = {}
    try:
        for field, upload in uploads.items():
            saved[field] = save_upload(field, upload)
    except BaseException:
        remove_files(saved.values())
        raise
    return saved


def remove_files(paths: object) -> None:
    for path in paths:  # type: ignore[attr-defined]
        Path(path).unlink(missing_ok=True)


def name_uploads_in_error(exc: Exception, saved: dict[str, Path]) -> Exception:
    """Pixeltable names a bad upload by its tmp path; the client knows it by its field."""
    import pixeltable as pxt

    if not isinstance(exc, pxt.Error):
        return exc
    message = str(exc)
    hits = [field for field, path in saved.items() if str(path) in message]
    if not hits:
        return exc
    for field in hits:
        message = message.replace(str(saved[field]), f"the upload in field {field!r}")
    return ApiError(exc.http_status, exc.error_code.name, f"{', '.join(hits)}: {message}")
