"""Helpers for the tests that run `manage.py serve` (or other commands) as real processes."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(
    url: str, process: subprocess.Popen, timeout: float = 120, output: Callable[[], str] = lambda: ""
) -> None:
    """Poll `url` until it answers 200; fail at once if the process exits, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, f"process exited with {process.returncode}\n{output()}"
        assert time.monotonic() < deadline, f"{url} did not come up\n{output()}"
        time.sleep(0.3)
