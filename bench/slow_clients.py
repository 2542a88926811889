"""Slow and oversized clients against a running server (issue 17.2): run by hand, never in CI.

    python bench/slow_clients.py --url http://127.0.0.1:8000 --pid <server pid> [--connections 1000] [--hold 20]

1. Opens `--connections` connections that send a request head a byte every second (half of them a complete
   head, then the body a byte a second), and while they are held, times `--probes` plain GET /healthz
   requests from a new client (each with a 10 s timeout: a timeout counts as not served).
2. Reports how many of the slow connections the server had closed after `--hold` seconds.
3. Sends `--big-headers` requests whose head carries a 50 MB header, one connection each, all at once,
   and reports the server's peak RSS while they run (psutil) and what each got back.
"""

from __future__ import annotations

import argparse
import resource
import selectors
import socket
import statistics
import threading
import time
import urllib.parse

import httpx
import psutil

HEAD = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
BODY_HEAD = (
    b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
)


def slow_connections(host: str, port: int, count: int) -> list[socket.socket]:
    socks = []
    for index in range(count):
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(BODY_HEAD if index % 2 else HEAD)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def trickle(socks: list[socket.socket], stop: threading.Event) -> None:
    while not stop.wait(1.0):
        for sock in socks:
            try:
                sock.send(b"a")
            except (BlockingIOError, OSError):
                pass


def closed_by_server(socks: list[socket.socket]) -> int:
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    closed = 0
    for key, _ in selector.select(timeout=0.5):
        try:
            while chunk := key.fileobj.recv(65536):
                del chunk
            closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    selector.close()
    return closed


def probe(url: str, count: int) -> tuple[int, list[float]]:
    served, times = 0, []
    for _ in range(count):
        start = time.perf_counter()
        try:
            if httpx.get(url + "/healthz", timeout=10).status_code == 200:
                served += 1
                times.append(time.perf_counter() - start)
        except httpx.HTTPError:
            pass
    return served, times


def big_header(host: str, port: int, results: list[str]) -> None:
    try:
        with socket.create_connection((host, port), timeout=60) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
            chunk = b"a" * (1 << 20)
            for _ in range(50):
                sock.sendall(chunk)
            sock.sendall(b"\r\n\r\n")
            results.append(sock.recv(200).split(b"\r\n", 1)[0].decode(errors="replace") or "closed")
    except OSError as exc:
        results.append(f"{type(exc).__name__} (closed by the server)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, required=True, help="the server process (its RSS is sampled)")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=20.0)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--big-headers", type=int, default=8)
    args = parser.parse_args()
    parts = urllib.parse.urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.connections + 100)), hard))

    socks = slow_connections(host, port, args.connections)
    stop = threading.Event()
    thread = threading.Thread(target=trickle, args=(socks, stop), daemon=True)
    thread.start()
    time.sleep(2)
    served, times = probe(args.url, args.probes)
    median = f"{statistics.median(times) * 1000:.0f} ms" if times else "-"
    print(f"{args.connections} slow connections held: new client served {served}/{args.probes}, median {median}")
    time.sleep(max(0.0, args.hold - 2))
    stop.set()
    thread.join()
    print(f"after {args.hold:.0f} s: {closed_by_server(socks)}/{len(socks)} slow connections closed by the server")
    for sock in socks:
        sock.close()

    server = psutil.Process(args.pid)
    before = server.memory_info().rss
    peak = before
    results: list[str] = []
    threads = [threading.Thread(target=big_header, args=(host, port, results)) for _ in range(args.big_headers)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, server.memory_info().rss)
        time.sleep(0.05)
    growth = (peak - before) / 1e6
    print(f"{args.big_headers} x 50 MB header: server RSS +{growth:.0f} MB at peak; answers: {sorted(set(results))}")


if __name__ == "__main__":
    main()
