"""Multipart file uploads: each upload becomes a file in Pixeltable's tmp directory, named with
the extension of the type its content is (pxtserve.upload_types), whose path is the column (or
parameter) value.

Django streams uploads larger than FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file, which is moved
here; smaller ones are copied from memory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile

from pxtserve import conf
from pxtserve.errors import ApiError
from pxtserve.pxt_internals import tmp_file_path
from pxtserve.upload_types import detected_extension


def save_upload(field: str, upload: UploadedFile) -> Path:
    """Write one upload to Pixeltable's tmp dir, under the extension of what it is; 413 beyond the configured size."""
    limit = conf.settings().MAX_UPLOAD_SIZE
    if upload.size is not None and upload.size > limit:
        raise ApiError(413, "UPLOAD_TOO_LARGE", f"upload {field!r} is {upload.size} bytes; the limit is {limit} bytes")
    if not upload.size:
        raise ApiError(422, "EMPTY_UPLOAD", f"upload {field!r} is empty")
    staging = tmp_file_path()
    try:
        _write(upload, staging)
        dest = staging.with_suffix(detected_extension(staging, upload.name or ""))
        os.replace(staging, dest)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return dest


def _write(upload: UploadedFile, dest: Path) -> None:
    if isinstance(upload, TemporaryUploadedFile):
        # already a file of its own on disk (Django's upload handler wrote it): moved, not copied again
        shutil.move(upload.temporary_file_path(), dest)
        return
    with open(dest, "wb") as out:
        out.writelines(upload.chunks())


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
