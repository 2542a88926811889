"""Redis for the tests that need it: the machine's on 127.0.0.1:6379, started if it is not running
(under CI=true a missing Redis is a failure, never a skip)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# a database of its own, flushed after the session
REDIS_DB = 9


def _redis_answers() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _start_redis() -> bool:
    binary = shutil.which("redis-server")
    if binary is None:
        return False
    subprocess.run(
        [
            binary,
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=False,
        capture_output=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _redis_answers():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if not _redis_answers():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT} (CI=true: the service must be provided)")
        if not _start_redis():
            pytest.fail(
                f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT} and could not be started "
                "(install redis-server, or start it: redis-server --daemonize yes --port 6379)"
            )
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    yield url
    import redis

    redis.from_url(url).flushdb()
