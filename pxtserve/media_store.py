"""Where media files that responses point at live: Pixeltable's directories, and pxtserve's own store
of media made while answering (images a computed column returns in memory, a compute route's uploads).

Pixeltable's tmp directory is per process and cleared once the process is gone, so a
URL into it dies with the process (a job worker is replaced; a server restarts). Media
made for a response is kept in `<Pixeltable home>/pxtserve_media` instead, and removed
MEDIA_OUTPUT_RETENTION_SECONDS after it was written.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from functools import lru_cache
from pathlib import Path

import PIL.Image

from pxtserve import conf
from pxtserve.pxt_internals import media_directories
from pxtserve.throttle import Throttle

_logger = logging.getLogger("pxtserve.media")

# the store is swept for expired files at most this often per process
_PRUNE_INTERVAL_S = 600.0


@lru_cache(maxsize=1)
def media_roots() -> tuple[Path, tuple[Path, ...]]:
    """Pixeltable's home and the directories under it that media URLs may point into."""
    directories = media_directories()
    home = directories[0].parent
    return home, (*directories, home / "pxtserve_media")


def output_dir() -> Path:
    directory = media_roots()[1][-1]
    directory.mkdir(exist_ok=True)
    return directory


def save_image(image: PIL.Image.Image) -> Path:
    """Write an in-memory image (a computed column's value) to the store."""
    fmt = "png" if image.mode in ("RGBA", "LA", "P") else "jpeg"
    dest = output_dir() / f"{uuid.uuid4().hex}.{fmt}"
    image.save(dest, format=fmt)
    _maybe_prune()
    return dest


def keep_file(path: Path) -> Path:
    """Move a file (an upload a compute route answers with) into the store."""
    dest = output_dir() / f"{uuid.uuid4().hex}{path.suffix}"
    shutil.move(path, dest)
    _maybe_prune()
    return dest


def prune_outputs(now: float | None = None) -> int:
    """Remove the store's files older than MEDIA_OUTPUT_RETENTION_SECONDS; how many were removed."""
    cutoff = (now or time.time()) - conf.settings().MEDIA_OUTPUT_RETENTION_SECONDS
    removed = 0
    for path in output_dir().iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another process pruned it first
            continue
    return removed


_prune = Throttle(_PRUNE_INTERVAL_S)


def _maybe_prune() -> None:
    if not _prune.due():
        return
    try:
        prune_outputs()
    except OSError:
        _logger.exception("pruning %s failed", output_dir())
