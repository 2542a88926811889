"""pxtserve's store of media made for responses: kept past the request, removed after the retention period."""

from __future__ import annotations

import os
import time

import PIL.Image
from django.test import override_settings

from pxtserve import media_store


def test_saved_images_are_served_from_a_media_root_and_pruned_after_the_retention(pxt_tables):
    saved = media_store.save_image(PIL.Image.new("RGB", (3, 2), "red"))
    _, roots = media_store.media_roots()
    assert saved.parent == roots[-1] and saved.suffix == ".jpeg"
    assert PIL.Image.open(saved).size == (3, 2)
    old = media_store.save_image(PIL.Image.new("RGBA", (1, 1)))
    assert old.suffix == ".png"
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    with override_settings(PXTSERVE={"MEDIA_OUTPUT_RETENTION_SECONDS": 1800}):
        assert media_store.prune_outputs() >= 1
    assert saved.exists() and not old.exists()


def test_kept_files_move_into_the_store(pxt_tables, tmp_path):
    upload = tmp_path / "u.png"
    PIL.Image.new("RGB", (2, 2)).save(upload)
    kept = media_store.keep_file(upload)
    assert not upload.exists() and kept.exists() and kept.suffix == ".png"
    assert kept.parent == media_store.output_dir()
