"""The load: wrk with the Lua scripts of bench/wrk/ for the servers, Python threads for the direct calls."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.home import N_PRELOADED, THREAD_STRIDE

WRK_DIR = Path(__file__).resolve().parent / "wrk"
ROUTES = ("insert", "update", "delete", "lookup", "search")
WRK_MISSING = (
    "wrk is not installed: the HTTP targets need it. Install Debian's package:\n"
    "    apt-get update && apt-get install -y wrk\n"
    "(or run only the in-process target: --targets direct)"
)
# a request slower than this counts as a timeout error
WRK_TIMEOUT = "10s"


@dataclass
class RunResult:
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx responses + socket errors (wrk), raised exceptions (direct)
    non2xx: int = 0
    misses: int = 0  # delete requests past the preloaded rows (they delete nothing)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rps": self.rps}


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_threads(concurrency: int) -> int:
    return min(concurrency, 2)


def direct_threads(concurrency: int) -> int:
    return concurrency


# ---------------------------------------------------------------------------------------------------- wrk


def run_wrk(url: str, route: str, concurrency: int, duration_s: float, script_args: list[str]) -> RunResult:
    """One wrk run of bench/wrk/<route>.lua; raises RuntimeError if wrk fails or prints no result."""
    threads = wrk_threads(concurrency)
    argv = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration_s:g}s", "--latency", f"--timeout={WRK_TIMEOUT}"]
    argv += ["-s", str(WRK_DIR / f"{route}.lua"), url, "--", *script_args]
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=duration_s + 60)
    return parse_wrk_output(proc.stdout, proc.stderr, proc.returncode)


def parse_wrk_output(stdout: str, stderr: str = "", returncode: int = 0) -> RunResult:
    match = re.search(r"^BENCH_JSON (\{.*\})$", stdout, re.MULTILINE)
    if returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed (exit {returncode}):\n{stdout[-2000:]}\n{stderr[-2000:]}")
    data = json.loads(match.group(1))
    non2xx_match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", stdout)
    non2xx = int(non2xx_match.group(1)) if non2xx_match else 0
    socket_errors = sum(data[f"errors_{kind}"] for kind in ("connect", "read", "write", "timeout"))
    return RunResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=max(non2xx, data["errors_status"]) + socket_errors,
        non2xx=non2xx,
        detail=data,
    )


def delete_misses(thread_counters: list[int], per_thread: int) -> int:
    return sum(max(0, count - per_thread) for count in thread_counters)


# ---------------------------------------------------------------------------------------------------- direct

Operation = Callable[[int, int, random.Random], Any]


def direct_operation(route: str, base: int) -> Operation:
    """The Pixeltable call a route makes, as f(thread_index, counter, rng); the same calls pxtserve's routes make."""
    from bench.bench_app import queries
    from bench.bench_app.schema import items

    def insert(tid: int, n: int, rng: random.Random) -> Any:
        row_id = base + tid * THREAD_STRIDE + n
        return items.insert([{"id": row_id, "name": f"item-{row_id}"}], return_rows=True).rows

    def update(tid: int, n: int, rng: random.Random) -> Any:
        row = {"id": rng.randint(1, N_PRELOADED), "name": f"upd-{tid}-{n}"}
        return items.batch_update([row], if_not_exists="ignore", return_rows=True).rows

    def delete(tid: int, n: int, rng: random.Random) -> Any:
        return items.delete(where=items.id == base + tid * THREAD_STRIDE + n).num_rows

    def lookup(tid: int, n: int, rng: random.Random) -> Any:
        args = {"id": rng.randint(1, N_PRELOADED)}
        return list(queries.lookup.template_query._collect(args=args, media_as_urls=True))

    def search(tid: int, n: int, rng: random.Random) -> Any:
        args = {"start": rng.randint(1, N_PRELOADED - 9)}
        return list(queries.search.template_query._collect(args=args, media_as_urls=True))

    return {"insert": insert, "update": update, "delete": delete, "lookup": lookup, "search": search}[route]


class _DirectThread(threading.Thread):
    """Calls `operation` in a loop until `end`; keeps the latencies of the calls that finish in [start, end]."""

    def __init__(self, tid: int, operation: Operation, start_at: float, end_at: float) -> None:
        super().__init__(name=f"direct-{tid}", daemon=True)
        self.tid = tid
        self.operation = operation
        self.start_at = start_at
        self.end_at = end_at
        self.latencies: list[float] = []
        self.errors = 0
        self.calls = 0
        self.first_error: str | None = None

    def run(self) -> None:
        rng = random.Random(1000 + self.tid)
        try:
            while (began := time.monotonic()) < self.end_at:
                self.calls += 1
                ok = self._call(rng)
                ended = time.monotonic()
                if began >= self.start_at and ended <= self.end_at:
                    if ok:
                        self.latencies.append(ended - began)
                    else:
                        self.errors += 1
        finally:
            from pixeltable.runtime import get_runtime

            get_runtime().close()  # the thread's Pixeltable runtime: its event loop and clients

    def _call(self, rng: random.Random) -> bool:
        try:
            self.operation(self.tid, self.calls, rng)
            return True
        except Exception as exc:  # noqa: BLE001 - an error is a result here, counted and shown once
            if self.first_error is None:
                self.first_error = f"{type(exc).__name__}: {exc}"
            return False


def run_direct(
    route: str,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    base: int,
    on_window: tuple[Callable[[], None], Callable[[], None]],
) -> RunResult:
    """`concurrency` threads call Pixeltable for warmup_s + duration_s; only the last duration_s is measured.

    on_window: (start, stop), called as the measured window opens and closes (RSS and connection monitors).
    """
    operation = direct_operation(route, base)
    start_at = time.monotonic() + warmup_s
    end_at = start_at + duration_s
    threads = [_DirectThread(tid, operation, start_at, end_at) for tid in range(direct_threads(concurrency))]
    for thread in threads:
        thread.start()
    _sleep_until(start_at)
    on_window[0]()
    _sleep_until(end_at)
    on_window[1]()
    for thread in threads:
        thread.join()
    latencies = sorted(lat for thread in threads for lat in thread.latencies)
    first_error = next((t.first_error for t in threads if t.first_error), None)
    return RunResult(
        requests=len(latencies),
        duration_s=duration_s,
        p50_ms=_percentile(latencies, 50) * 1000,
        p99_ms=_percentile(latencies, 99) * 1000,
        errors=sum(t.errors for t in threads),
        detail={"thread_counters": [t.calls for t in threads], "first_error": first_error},
    )


def _sleep_until(at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile (what wrk reports too); 0 for no values."""
    if not sorted_values:
        return 0.0
    rank = math.ceil(pct / 100 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]
