"""A real `manage.py serve` for the media tests (streaming, signing, the browser's media): one process per
service text, started on a free port with its own Django database, its output in a log file, and files
placed straight into the media store the server serves from (the test session's Pixeltable home)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from tests.processes import REPO, free_port, serve_env, stop_process, wait_until_up

START_TIMEOUT_S = 120


class MediaServer:
    def __init__(self, tmp_path: Path, service: str, **env: str) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        config = tmp_path / f"service-{self.port}.toml"
        config.write_text(service)
        name = next(
            line.split("=", 1)[1].strip().strip('"') for line in service.splitlines() if line.startswith("name")
        )
        self.log_path = tmp_path / f"serve-{self.port}.log"
        command = [sys.executable, "manage.py", "serve", name, "--config", str(config), "--no-workers"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                env=serve_env(tmp_path, PXTSERVE_VAR_DIR=str(tmp_path / f"var-{self.port}"), **env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until_up(f"{self.origin}/healthz", self.process, START_TIMEOUT_S, self.log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def open_paths(self) -> set[str]:
        """The files the server process has open now."""
        return {f.path for f in psutil.Process(self.process.pid).open_files()}

    def chars_read(self) -> int:
        """Bytes the server process has read through read()/pread() so far (files and sockets alike)."""
        return psutil.Process(self.process.pid).io_counters().read_chars

    def stop(self) -> None:
        stop_process(self.process)


def store_file(suffix: str, content: bytes) -> tuple[Path, str]:
    """A file written straight into pxtserve's media store, and its path under the media view."""
    from pxtserve.media_store import media_roots, output_dir

    path = output_dir() / f"{uuid.uuid4().hex}{suffix}"
    path.write_bytes(content)
    return path, path.relative_to(media_roots()[0]).as_posix()


def sized_file(suffix: str, size: int) -> tuple[Path, str]:
    """A file of `size` bytes whose every 8-byte word is its own offset (so any range's bytes are checkable)."""
    import numpy as np

    content = (np.arange(size // 8 + 1, dtype=">u8") * 8).tobytes()[:size]
    return store_file(suffix, content)


@contextmanager
def started(tmp_path_factory: pytest.TempPathFactory, service: str, **env: str) -> Iterator[MediaServer]:
    """A MediaServer for `service`, stopped on exit."""
    server = MediaServer(tmp_path_factory.mktemp("media-server"), service, **env)
    try:
        yield server
    finally:
        server.stop()
