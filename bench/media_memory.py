"""Media downloads in bounded memory: the server's peak RSS growth while clients download a large file at once
through the media view, and the p99 of lookups served meanwhile against the p99 without the downloads.

    python bench/media_memory.py [--size-mb 300] [--clients 4] [--repo DIR] [--json FILE]

`--repo` serves another checkout (e.g. a temporary worktree of an earlier commit) with the same benchmark, so
that before and after are measured alike. One `manage.py serve bench --no-workers` process on a fresh
Pixeltable home (bench/home.py); the file is written into pxtserve's media store and fetched from
`/media/pxtserve_media/...`. RSS is sampled every 20 ms (psutil) from just before the downloads start until
they all end; lookups run on 2 client threads, sequential requests each, for a fixed time without downloads,
then for as long as the downloads run (each download a process of its own).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx
import psutil

from bench.home import create_and_preload, prepare_environment, stop_database_and_remove
from bench.servers import free_port

SAMPLE_S = 0.02
LOOKUP_THREADS = 2
QUIET_LOOKUP_S = 10.0
CHUNK = 1024 * 1024


@dataclass
class MediaMemoryResult:
    repo: str
    size_mb: int
    clients: int
    rss_before_mb: float
    rss_peak_mb: float
    rss_growth_mb: float
    download_s: float
    downloads_ok: int
    lookup_p99_quiet_ms: float
    lookup_p99_downloading_ms: float
    lookups_quiet: int
    lookups_downloading: int
    warnings_in_log: int


def _write_file(path: Path, size: int) -> None:
    block = os.urandom(CHUNK)
    with open(path, "wb") as f:
        f.writelines(block for _ in range(size // CHUNK))


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else float("nan")


def _lookups(url: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(timeout=60) as client:
        n = 0
        while not stop.is_set():
            n += 1
            began = time.perf_counter()
            r = client.get(f"{url}/lookup", params={"id": 1 + n % 1000})
            elapsed = time.perf_counter() - began
            if r.status_code == 200:
                out.append(elapsed)


def _download(port: int, path: str, size: int, ready: Any, go: Any) -> None:
    """A plain socket client in a process of its own (spawned): cheap on the CPU the server shares, and no GIL
    shared with the lookup clients, so the figures are the server's. Exits 1 when the body was short."""
    ready.release()
    go.wait()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        buf = bytearray(CHUNK)
        received = 0
        while n := sock.recv_into(buf):
            received += n
    if received < size:
        sys.exit(1)


def _start_lookups(url: str, stop: threading.Event) -> tuple[list[float], list[threading.Thread]]:
    latencies: list[float] = []
    threads = [threading.Thread(target=_lookups, args=(url, stop, latencies)) for _ in range(LOOKUP_THREADS)]
    for t in threads:
        t.start()
    return latencies, threads


def _wait_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/lookup?id=1", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the server did not come up:\n{log.read_text()[-3000:]}")


def measure(repo: Path, home: Path, size_mb: int, clients: int) -> MediaMemoryResult:
    media_dir = home / "pxtserve_media"
    media_dir.mkdir(exist_ok=True)
    size = size_mb * CHUNK
    _write_file(media_dir / "bench-large.bin", size)
    media_path = "/media/pxtserve_media/bench-large.bin"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / f"media-memory-{port}.log"
    command = [sys.executable, "manage.py", "serve", "bench", "--config", str(REPO_ROOT / "bench" / "service.toml")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-workers"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_up(url, process, log)
        server = psutil.Process(process.pid)
        # the media path warmed up on a small range (a whole download would leave the heap grown)
        httpx.get(f"{url}{media_path}", headers={"Range": "bytes=0-1023"}, timeout=30).raise_for_status()
        quiet_stop = threading.Event()
        quiet, lookup_threads = _start_lookups(url, quiet_stop)
        time.sleep(QUIET_LOOKUP_S)
        quiet_stop.set()
        for t in lookup_threads:
            t.join()
        # started (and their imports done) before anything is measured; released together
        spawn = multiprocessing.get_context("spawn")
        ready, go = spawn.Semaphore(0), spawn.Event()
        downloads = [spawn.Process(target=_download, args=(port, media_path, size, ready, go)) for _ in range(clients)]
        for t in downloads:
            t.start()
        for _ in downloads:
            ready.acquire()
        time.sleep(1.0)
        rss_before = server.memory_info().rss
        peak = rss_before
        busy_stop = threading.Event()
        busy, lookup_threads = _start_lookups(url, busy_stop)
        began = time.monotonic()
        go.set()
        while any(t.is_alive() for t in downloads):
            peak = max(peak, server.memory_info().rss)
            time.sleep(SAMPLE_S)
        download_s = time.monotonic() - began
        ok = [t.exitcode == 0 for t in downloads]
        busy_stop.set()
        for t in lookup_threads:
            t.join()
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    warnings = log.read_text(errors="replace").count("StreamingHttpResponse must consume")
    return MediaMemoryResult(
        repo=str(repo),
        size_mb=size_mb,
        clients=clients,
        rss_before_mb=round(rss_before / 2**20, 1),
        rss_peak_mb=round(peak / 2**20, 1),
        rss_growth_mb=round((peak - rss_before) / 2**20, 1),
        download_s=round(download_s, 2),
        downloads_ok=sum(ok),
        lookup_p99_quiet_ms=round(_p99(quiet), 2),
        lookup_p99_downloading_ms=round(_p99(busy), 2),
        lookups_quiet=len(quiet),
        lookups_downloading=len(busy),
        warnings_in_log=warnings,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="the checkout to serve (default: this one)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    home = prepare_environment(None)
    try:
        create_and_preload()
        result = measure(args.repo.resolve(), home, args.size_mb, args.clients)
    finally:
        stop_database_and_remove(home, keep=False)
    text = json.dumps(asdict(result), indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
