"""Server memory during a large multipart upload, and how early an upload over the limit is refused.

    python bench/upload_memory.py [--size-mb 500] [--repo PATH]

Starts `manage.py serve` (one process, no job workers) from `--repo` (default: this checkout; give an
exported older commit to measure "before") with MAX_UPLOAD_SIZE and MAX_REQUEST_BODY raised above the
upload, and a route that inserts an uploaded video. Then:

1. streams one multipart upload of `--size-mb` MB (an MP4 header, padded) while sampling the server's RSS
   every 10 ms, and prints the RSS before, the peak, the growth, and the bytes the server wrote to files;
2. with MAX_UPLOAD_SIZE at 10 MB, announces a 200 MB upload and sends it in 64 KiB chunks until the server
   answers, and prints the status, how much had been sent, and how much the server wrote to files meanwhile
   (psutil's write_chars: Django's spooled body is an unlinked file no directory listing shows).

The server's memory is the one measured; the client streams its body from a generator.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `python bench/upload_memory.py`: import tests.*

from tests.processes import free_port, stop_embedded_postgres, stop_process, wait_until_up
from tests.test_uploads import mp4

MB = 1024 * 1024
BOUNDARY = "benchb0undary"
SERVICE = """
[[service]]
name = "uploads"
modules = ["bench_upload_schema"]
[[service.routes]]
type = "insert"
table = "bench_uploads.videos"
path = "/videos"
uploadfile_inputs = ["video"]
outputs = ["id"]
"""
SCHEMA = """
import pixeltable as pxt

pxt.create_dir("bench_uploads", if_exists="ignore")
videos = pxt.create_table(
    "bench_uploads.videos", {"id": pxt.Required[pxt.Int], "video": pxt.Video}, primary_key="id", if_exists="ignore"
)
"""
SETTINGS = """
from project.settings import *

FILE_UPLOAD_TEMP_DIR = {upload_dir!r}
PXTSERVE = {{**PXTSERVE, "MAX_UPLOAD_SIZE": {max_upload}, "MAX_REQUEST_BODY": {max_body}}}
"""


def small_mp4() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return mp4(Path(tmp))


def start_server(repo: Path, work: Path, max_upload: int, max_body: int) -> tuple[subprocess.Popen[bytes], int]:
    upload_dir = work / "upload-tmp"
    upload_dir.mkdir(exist_ok=True)
    (work / "bench_upload_schema.py").write_text(SCHEMA)
    (work / "bench_upload_settings.py").write_text(
        SETTINGS.format(upload_dir=str(upload_dir), max_upload=max_upload, max_body=max_body)
    )
    (work / "uploads.toml").write_text(SERVICE)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{work}:{repo}",
        "DJANGO_SETTINGS_MODULE": "bench_upload_settings",
        "PIXELTABLE_HOME": str(work / "pxt"),
        "PIXELTABLE_VERBOSITY": "0",
        "PXTSERVE_DJANGO_DB": str(work / "django.sqlite3"),
        "PXTSERVE_VAR_DIR": str(work),
        "PXTSERVE_ACCESS_LOG": "0",
    }
    command = [sys.executable, "manage.py", "serve", "uploads", "--config", str(work / "uploads.toml")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-workers"]
    log = open(work / f"serve-{port}.log", "wb")  # noqa: SIM115 (open for the server's lifetime)
    process = subprocess.Popen(command, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_until_up(
        f"http://127.0.0.1:{port}/healthz",
        process,
        timeout=180,
        output=lambda: Path(log.name).read_text(errors="replace"),
    )
    return process, port


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, tree_rss(self.pid))
            time.sleep(0.01)


def multipart(size: int, header: bytes) -> tuple[int, Iterator[bytes]]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="id"\r\n\r\n1\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="video"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    chunk = b"\0" * MB

    def body() -> Iterator[bytes]:
        yield head + header
        left = size - len(header)
        while left > 0:
            yield chunk[: min(left, MB)]
            left -= MB
        yield tail

    return len(head) + size + len(tail), body()


def measure_large_upload(repo: Path, work: Path, size: int) -> None:
    process, port = start_server(repo, work, max_upload=size + MB, max_body=size + 2 * MB)
    try:
        httpx.get(f"http://127.0.0.1:{port}/openapi.json")  # warm: the routes and Ninja's schema are built
        time.sleep(1)
        before, written = tree_rss(process.pid), written_bytes(process.pid)
        sampler = RssSampler(process.pid)
        sampler.start()
        length, body = multipart(size, small_mp4())
        started = time.monotonic()
        r = httpx.post(
            f"http://127.0.0.1:{port}/videos",
            content=body,
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(length)},
            timeout=600,
        )
        elapsed = time.monotonic() - started
        written = written_bytes(process.pid) - written
        time.sleep(0.2)
        sampler.running = False
        sampler.join()
        print(
            f"upload of {size / MB:.0f} MB: HTTP {r.status_code} in {elapsed:.1f} s ({r.text[:120]}); "
            f"the server wrote {written / MB:.0f} MB to files"
        )
        print(
            f"server RSS before {before / MB:.0f} MB, peak {sampler.peak / MB:.0f} MB, "
            f"growth {(sampler.peak - before) / MB:.0f} MB"
        )
    finally:
        stop_process(process)


def measure_over_limit(repo: Path, work: Path) -> None:
    limit, announced = 10 * MB, 200 * MB
    process, port = start_server(repo, work, max_upload=limit, max_body=announced + MB)
    try:
        length, body = multipart(announced, b"")
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        head = (
            f"POST /videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
        )
        written = written_bytes(process.pid)
        sock.sendall(head.encode())
        sent, answer = 0, b""
        for piece in body:
            for offset in range(0, len(piece), 64 * 1024):
                if select.select([sock], [], [], 0)[0]:  # the server answered: stop sending
                    answer = sock.recv(65536)
                    break
                try:
                    sock.sendall(piece[offset : offset + 64 * 1024])
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(piece[offset : offset + 64 * 1024])
            else:
                continue
            break
        if not answer:
            answer = sock.recv(65536)
        sock.close()
        time.sleep(1)  # what the server still does with the body after its answer is counted too
        written = written_bytes(process.pid) - written
        status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
        print(
            f"over the limit ({limit / MB:.0f} MB limit, {announced / MB:.0f} MB announced): '{status}' after "
            f"{sent / MB:.1f} MB sent; the server wrote {written / MB:.1f} MB to files meanwhile"
        )
    finally:
        stop_process(process)


def written_bytes(pid: int) -> int:
    """What the server process has written with write() calls so far (files, unlinked spool files included)."""
    return psutil.Process(pid).io_counters().write_chars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout to serve from")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pxtserve-upload-bench-") as tmp:
        work = Path(tmp)
        try:
            measure_large_upload(args.repo.resolve(), work, args.size_mb * MB)
            measure_over_limit(args.repo.resolve(), work)
        finally:
            stop_embedded_postgres(work / "pxt" / "pgdata")


if __name__ == "__main__":
    main()
