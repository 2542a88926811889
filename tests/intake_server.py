"""One real `manage.py serve` process for the request-intake tests (tests/test_intake_*.py), and raw-socket helpers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import REPO, free_port, serve_env, stop_process, wait_until_up

KEY = "intake-key"
MAX_UPLOAD_SIZE = 1_000_000
MAX_PENDING_JOBS = 3

SERVICE = """
[[service]]
name = "intake"
modules = ["tests.pxt_app.schema"]
auth = "api_key"
mcp = true

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/items"
inputs = ["id", "name"]
outputs = ["id", "name"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/open/items"
inputs = ["id", "name"]
outputs = ["id", "name"]
auth = "none"

[[service.routes]]
type = "insert"
table = "pxtserve_test.images"
path = "/images"
uploadfile_inputs = ["image"]
outputs = ["id", "thumb"]

[[service.routes]]
type = "insert"
table = "pxtserve_test.media"
path = "/open/media"
uploadfile_inputs = ["image", "video", "audio", "document"]
outputs = ["id", "image", "video", "audio", "document"]
auth = "none"

[[service.routes]]
type = "query"
path = "/open/lookup"
query = "tests.pxt_app.queries.item_by_id"
method = "get"
one_row = true
auth = "none"

[[service.routes]]
type = "insert"
table = "pxtserve_test.items"
path = "/open/items/bg"
inputs = ["id", "name"]
outputs = ["id"]
background = true
auth = "none"
"""

SETTINGS = f"""
from project.settings import *

FILE_UPLOAD_TEMP_DIR = UPLOAD_TEMP_DIR
PXTSERVE = {{
    **PXTSERVE,
    "API_KEYS": [{KEY!r}],
    "MAX_UPLOAD_SIZE": {MAX_UPLOAD_SIZE},
    "MAX_REQUEST_BODY": 200_000_000,
    "DOCS_AUTH": True,
    "MAX_PENDING_JOBS": {MAX_PENDING_JOBS},
    "MAX_JOB_INPUT_BYTES": 2_000,
}}
"""


@dataclass
class IntakeServer:
    url: str
    port: int
    upload_temp_dir: Path
    log: Path


@pytest.fixture(scope="module")
def intake_server(pxt_tables, tmp_path_factory) -> Iterator[IntakeServer]:
    tmp = tmp_path_factory.mktemp("intake")
    uploads = tmp / "upload-tmp"
    uploads.mkdir()
    (tmp / "intake_settings.py").write_text(f"UPLOAD_TEMP_DIR = {str(uploads)!r}\n" + SETTINGS)
    (tmp / "intake.toml").write_text(SERVICE)
    port = free_port()
    env = serve_env(tmp, PYTHONPATH=f"{tmp}:{REPO}", DJANGO_SETTINGS_MODULE="intake_settings")
    log_path = tmp / "serve.log"
    command = [sys.executable, "manage.py", "serve", "intake", "--config", str(tmp / "intake.toml")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-workers"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process, output=lambda: log_path.read_text())
        yield IntakeServer(f"http://127.0.0.1:{port}", port, uploads, log_path)
    finally:
        stop_process(process)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def open_request(port: int, head: str) -> socket.socket:
    """A connection on which the request head (no body) has been sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
    return sock


def read_response(sock: socket.socket) -> RawResponse:
    """Read one response (Content-Length framed) from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    status = int(lines[0].split()[1])
    if headers.get("transfer-encoding") == "chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, "connection closed inside the body"
            body += chunk
        return RawResponse(status, headers, _dechunk(body))
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return RawResponse(status, headers, body[:length])


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2 :]


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes the connection within the socket's timeout (what it sent meanwhile is skipped)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True
