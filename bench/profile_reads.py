"""Where a read's time goes: ms per stage for lookup and search, for the direct call and for pxtserve.

    python bench/profile_reads.py [--n 2000] [--warmup 300] [--routes lookup,search] [--servers] [--home DIR]

One process, one fresh PIXELTABLE_HOME (bench/home.py), sequential calls (no concurrency: each stage's time is
its own, not a wait for another request). Three tables:

1. **CPU per request** (time.process_time over N calls, no instrumentation): the direct call
   (`template_query._collect(args=..., media_as_urls=True)`, as bench/loadgen.py's direct target) against the
   same request through pxtserve's ASGI application in this process (pxtserve.asgi.build_application with
   bench/service.toml, the access log off as `serve --no-access-log`), without HTTP parsing or sockets.
2. **Stages** (wall-clock ms per request, inclusive, from timers wrapped around the functions named in
   STAGES; nested stages are indented under the stage that contains them). The timers cost ~1 us per wrapped
   call, so the stage totals sit a little above table 1's.
3. With `--instructions` (run the script under valgrind, see below): instructions executed per request
   (all threads of this process; the database server is another process), counted by callgrind, which
   the machine's load does not change. Run it as
   `valgrind --tool=callgrind --instr-atstart=no python bench/profile_reads.py --instructions --n 200`:
   the script switches instrumentation on (callgrind_control) only around the measured calls.
4. With `--servers`: the CPU the server process itself spends per request (psutil, user + system, over N
   sequential keep-alive requests from one httpx client) for `manage.py serve` and the reference, real HTTP.

`--canned-rows`: query routes answer the rows of their first call again without calling Pixeltable, so the
"pxtserve ASGI" figures are pxtserve's HTTP side alone (Django, Ninja, the thread hop, the response).

The machine is shared and noisy: CPU time per request is the figure to compare, not throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import home
from bench.stage_timers import STAGES, StageTimers

N_ROWS = home.N_PRELOADED

# ---------------------------------------------------------------------------------------------------- the calls


def direct_call(route: str) -> Callable[[random.Random], Any]:
    """The direct target's call for `route`, as f(rng)."""
    from bench.bench_app import queries

    if route == "lookup":
        return lambda rng: list(
            queries.lookup.template_query._collect(args={"id": rng.randint(1, N_ROWS)}, media_as_urls=True)
        )
    return lambda rng: list(
        queries.search.template_query._collect(args={"start": rng.randint(1, N_ROWS - 9)}, media_as_urls=True)
    )


def prepared_call(route: str, rng: random.Random) -> Callable[[], None] | None:
    """The Pixeltable call a pxtserve query route makes (pxt_internals.PreparedRead), in this thread, without
    HTTP; None in a checkout without it."""
    from pxtserve import pxt_internals

    if not hasattr(pxt_internals, "PreparedRead"):
        return None
    from bench.bench_app import queries

    prepared = pxt_internals.PreparedRead(queries.lookup if route == "lookup" else queries.search)

    def call() -> None:
        prepared.rows({"id": rng.randint(1, N_ROWS)} if route == "lookup" else {"start": rng.randint(1, N_ROWS - 9)})

    return call


def asgi_request(app: Any, route: str, rng: random.Random) -> Any:
    """One request through the ASGI application (a coroutine); raises unless the answer is a 200."""
    if route == "lookup":
        method, path, query, body = "GET", "/lookup", f"id={rng.randint(1, N_ROWS)}".encode(), b""
    else:
        method, path, query, body = "POST", "/search", b"", b'{"start":%d}' % rng.randint(1, N_ROWS - 9)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8765),
    }
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect: the handler cancels this when the response is sent
        return {"type": "http.disconnect"}

    status: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    async def run() -> None:
        await app(scope, receive, send)
        if status != [200]:
            raise RuntimeError(f"{method} {path}: status {status}")

    return run()


def build_app() -> Any:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ["PXTSERVE_CONFIG"] = str(REPO_ROOT / "bench" / "service.toml")
    os.environ["PXTSERVE_SERVICE"] = "bench"
    os.environ["PXTSERVE_ACCESS_LOG"] = "0"  # as `serve --no-access-log`, how bench/run.py starts it
    from pxtserve.asgi import build_application

    return build_application()


def scale_inline_limit(factor: float) -> None:
    """INLINE_READ_SECONDS times `factor`: under valgrind every call takes some 50x its usual time, and a read
    whose last call took longer than the limit hops to the pool, which a real server would not do for it."""
    from django.conf import settings
    from django.test.utils import override_settings

    from pxtserve import conf

    if "INLINE_READ_SECONDS" in conf.Settings.model_fields:  # a checkout before pxtserve.inline_reads has none
        limit = conf.settings().INLINE_READ_SECONDS * factor
        override_settings(PXTSERVE={**settings.PXTSERVE, "INLINE_READ_SECONDS": limit}).enable()


def answer_canned_rows() -> None:
    """Make query routes answer the rows of their first call again, without calling Pixeltable: what is left of a
    request is pxtserve's HTTP side alone (--canned-rows; the "pxtserve ASGI" column then measures only that)."""
    from pxtserve.routes.query import QueryOperation

    fetch, canned = QueryOperation.fetch, {}

    def canned_fetch(self: Any, inputs: dict[str, Any]) -> Any:
        if self.path not in canned:
            canned[self.path] = fetch(self, inputs)
        return canned[self.path]

    QueryOperation.fetch = canned_fetch  # type: ignore[method-assign]


def cpu_per_call(run: Callable[[], None], n: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of `run` over n calls: this process's CPU, all threads."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        run()
    return (time.process_time() - cpu0) * 1000 / n, (time.perf_counter() - wall0) * 1000 / n


# ---------------------------------------------------------------------------------------------------- callgrind


def _callgrind(*command: str) -> str:
    """Run callgrind_control on this very process (which runs under valgrind); its output."""
    import subprocess

    done = subprocess.run(["callgrind_control", *command, str(os.getpid())], check=True, capture_output=True, text=True)
    return done.stdout


def instructions_per_call(run: Callable[[], None], n: int) -> float:
    """Instructions (callgrind's Ir, all threads of this process) per call of `run` over n calls."""
    _callgrind("-i", "on")
    _callgrind("-z")
    for _ in range(n):
        run()
    out_dir = Path(os.environ["PIXELTABLE_HOME"]) / "callgrind"
    out_dir.mkdir(exist_ok=True)
    before = set(out_dir.iterdir())
    _callgrind("-d")
    _callgrind("-i", "off")
    total = 0
    for path in Path.cwd().glob(f"callgrind.out.{os.getpid()}*"):
        if path in before:
            continue
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
        path.rename(out_dir / path.name)
    return total / n


# ---------------------------------------------------------------------------------------------------- servers


def http_call(client: Any, route: str, rng: random.Random) -> Callable[[], None]:
    """One request of `route` over HTTP with `client` (httpx), as f(); raises unless it is a 2xx."""

    def one() -> None:
        if route == "lookup":
            response = client.get("/lookup", params={"id": rng.randint(1, N_ROWS)})
        else:
            response = client.post("/search", json={"start": rng.randint(1, N_ROWS - 9)})
        response.raise_for_status()

    return one


def server_cpu(route: str, n: int, warmup: int) -> list[tuple[str, float, float]]:
    """(target, server CPU ms per request, wall ms per request) for pxtserve and the reference over real HTTP."""
    import httpx
    import psutil

    from bench import servers

    results = []
    log_dir = Path(os.environ["PIXELTABLE_HOME"]) / "profile-logs"
    log_dir.mkdir(exist_ok=True)
    for target in (servers.pxtserve_target(REPO_ROOT / "bench" / "service.toml"), servers.reference_target()):
        with servers.Server(target, log_dir) as server, httpx.Client(base_url=server.url) as client:
            proc = psutil.Process(server.pid)
            one = http_call(client, route, random.Random(7))
            for _ in range(warmup):
                one()
            tree = [proc, *proc.children(recursive=True)]
            cpu0 = sum(sum(p.cpu_times()[:2]) for p in tree)
            wall0 = time.perf_counter()
            for _ in range(n):
                one()
            wall = (time.perf_counter() - wall0) * 1000 / n
            cpu = (sum(sum(p.cpu_times()[:2]) for p in tree) - cpu0) * 1000 / n
            results.append((target.name, cpu, wall))
    return results


# ---------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="calls per measurement")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--routes", default="lookup,search")
    parser.add_argument("--servers", action="store_true", help="also the server processes' CPU per request")
    parser.add_argument(
        "--instructions", action="store_true", help="only instructions per request (under valgrind: see above)"
    )
    parser.add_argument(
        "--canned-rows", action="store_true", help="query routes answer canned rows: pxtserve's HTTP side alone"
    )
    parser.add_argument("--home", type=Path, default=None, help="Pixeltable home (default: a new temporary one)")
    args = parser.parse_args()
    routes = [r for r in args.routes.split(",") if r]

    home_dir = home.prepare_environment(args.home)
    home.create_and_preload()
    app = build_app()
    if args.instructions:
        scale_inline_limit(50)
    if args.canned_rows:
        answer_canned_rows()
    loop = asyncio.new_event_loop()

    def through_app(route: str, rng: random.Random) -> Callable[[], None]:
        return lambda: loop.run_until_complete(asgi_request(app, route, rng))

    def direct(route: str, rng: random.Random) -> Callable[[], None]:
        call = direct_call(route)
        return lambda: call(rng)

    print(f"# bench/profile_reads.py: n={args.n} per cell, home {home_dir}, load average {os.getloadavg()}")
    if args.instructions:
        print("\n## Instructions per request (millions; callgrind, this process, all threads)\n")
        print("| route | direct | pxtserve ASGI | pxtserve / direct | pxtserve's Pixeltable call alone |")
        print("|---|---|---|---|---|")
        for route in routes:
            rng = random.Random(1)
            in_process, via_app, own = direct(route, rng), through_app(route, rng), prepared_call(route, rng)
            for _ in range(args.warmup):
                in_process()
                via_app()
                if own is not None:
                    own()
            d_ir = instructions_per_call(in_process, args.n) / 1e6
            a_ir = instructions_per_call(via_app, args.n) / 1e6
            own_ir = "-" if own is None else f"{instructions_per_call(own, args.n) / 1e6:.2f}"
            print(f"| {route} | {d_ir:.2f} | {a_ir:.2f} | {a_ir / d_ir:.2f} | {own_ir} |", flush=True)
        loop.close()
        return
    print("\n## CPU per request (ms, this process, no timers)\n")
    print("| route | direct CPU | pxtserve ASGI CPU | direct wall | pxtserve ASGI wall |")
    print("|---|---|---|---|---|")
    for route in routes:
        rng = random.Random(1)
        in_process, via_app = direct(route, rng), through_app(route, rng)
        cpu_per_call(in_process, args.warmup)
        cpu_per_call(via_app, args.warmup)
        d_cpu, d_wall = cpu_per_call(in_process, args.n)
        a_cpu, a_wall = cpu_per_call(via_app, args.n)
        print(f"| {route} | {d_cpu:.3f} | {a_cpu:.3f} | {d_wall:.3f} | {a_wall:.3f} |")

    timers = StageTimers()
    timers.install(STAGES)
    try:
        for route in routes:
            rng = random.Random(2)
            columns: dict[str, tuple[dict[str, float], dict[str, int]]] = {}
            for target, run in (("direct", direct(route, rng)), ("pxtserve", through_app(route, rng))):
                for _ in range(args.warmup):
                    run()
                timers.reset()
                for _ in range(args.n):
                    run()
                columns[target] = (dict(timers.seconds), dict(timers.calls))
            print(f"\n## {route}: ms per request by stage (inclusive wall-clock; calls per request)\n")
            print("| stage | direct | pxtserve |")
            print("|---|---|---|")
            for label, depth, _, _ in STAGES:
                cells = []
                for target in ("direct", "pxtserve"):
                    seconds, calls = columns[target]
                    if label in calls:
                        cells.append(f"{seconds[label] * 1000 / args.n:.3f} ({calls[label] / args.n:g})")
                    else:
                        cells.append("-")
                print(f"| {'&nbsp;' * 4 * depth}{label} | {cells[0]} | {cells[1]} |")
    finally:
        timers.uninstall()
    loop.close()

    if args.servers:
        print("\n## Server process CPU per request over HTTP (ms; one sequential keep-alive client)\n")
        print("| route | target | server CPU | wall |")
        print("|---|---|---|---|")
        for route in routes:
            for name, cpu, wall in server_cpu(route, args.n, args.warmup):
                print(f"| {route} | {name} | {cpu:.3f} | {wall:.3f} |")


if __name__ == "__main__":
    main()
