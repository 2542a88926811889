"""The background-jobs figure: how fast a `background = true` insert route hands out job handles, and how fast
its jobs get done, measured with a plain sequential Python client (httpx); and the CPU the server's processes
spend per job, which the machine's noise moves far less than jobs/s."""

from __future__ import annotations

import statistics
import time
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import psutil

from bench.home import THREAD_STRIDE

BG_PATH = "/insert-bg"
# a server that says it is full (503, e.g. the reference's 64 pending jobs) is asked again after this long
_BUSY_RETRY_S = 0.1
_POLL_INTERVAL_S = 0.05


@dataclass
class JobsResult:
    n_jobs: int
    handle_p50_ms: float  # median time to get {"id", "job_url"} back, sequential submits
    handle_p99_ms: float
    throughput_jobs_s: float  # n_jobs submitted back to back, until the last is done
    drain_s: float  # that whole time
    # CPU time (user + system) of the server's process and its children, over the throughput part, per job: the
    # submits, the runs and the polls together
    cpu_ms_per_job: float | None
    errors: int  # jobs that ended in "error", or submits that failed
    busy_retries: int  # submits answered 503 and sent again
    first_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Client:
    def __init__(self, base_url: str, id_base: int) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=60.0)
        self.next_id = id_base + THREAD_STRIDE
        self.busy_retries = 0
        self.errors = 0
        self.first_error: str | None = None

    def submit(self) -> str | None:
        """POST one row; the job's poll URL (on our base URL), or None if the submit failed."""
        self.next_id += 1
        body = {"id": self.next_id, "name": f"bg-{self.next_id}"}
        while True:
            response = self.http.post(BG_PATH, json=body)
            if response.status_code != 503:
                break
            self.busy_retries += 1
            time.sleep(_BUSY_RETRY_S)
        if response.status_code not in (200, 202):
            self.errors += 1
            self._error(f"submit: HTTP {response.status_code} {response.text[:200]}")
            return None
        return _local_path(response.json()["job_url"])

    def wait_all(self, job_paths: list[str], timeout_s: float) -> None:
        """Poll every job until it is done or failed."""
        pending = list(job_paths)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            pending = [path for path in pending if not self._finished(path)]
            if pending:
                time.sleep(_POLL_INTERVAL_S)
        if pending:
            self.errors += len(pending)
            self._error(f"{len(pending)} job(s) not done after {timeout_s:.0f} s")

    def _finished(self, path: str) -> bool:
        response = self.http.get(path)
        if response.status_code >= 400:
            self._error(f"poll: HTTP {response.status_code} {response.text[:200]}")
            self.errors += 1
            return True
        status = response.json().get("status")
        if status == "error":
            self.errors += 1
            self._error(f"job error: {response.text[:200]}")
        return status in ("done", "error")

    def _error(self, message: str) -> None:
        if self.first_error is None:
            self.first_error = message


def _local_path(job_url: str) -> str:
    """A job URL names the host the server saw (localhost); poll the same path on the address we use."""
    parts = urllib.parse.urlsplit(job_url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live descendants so far (a cluster's job workers are children)."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def measure_jobs(
    base_url: str, id_base: int, n_jobs: int = 200, timeout_s: float = 600.0, server_pid: int | None = None
) -> JobsResult:
    client = _Client(base_url, id_base)
    # 1. handle latency: sequential submits, one at a time; their jobs are then waited for
    handle_times: list[float] = []
    jobs: list[str] = []
    for _ in range(n_jobs):
        began = time.perf_counter()
        path = client.submit()
        handle_times.append(time.perf_counter() - began)
        if path is not None:
            jobs.append(path)
    client.wait_all(jobs, timeout_s)
    # 2. throughput: n_jobs back to back, then poll until the last one is done
    cpu_before = None if server_pid is None else _tree_cpu_s(server_pid)
    began = time.perf_counter()
    jobs = [path for path in (client.submit() for _ in range(n_jobs)) if path is not None]
    client.wait_all(jobs, timeout_s)
    drain_s = time.perf_counter() - began
    cpu_ms_per_job = None
    if cpu_before is not None and server_pid is not None and jobs:
        cpu_ms_per_job = (_tree_cpu_s(server_pid) - cpu_before) / len(jobs) * 1000
    handle_times.sort()
    return JobsResult(
        n_jobs=n_jobs,
        handle_p50_ms=statistics.median(handle_times) * 1000,
        handle_p99_ms=handle_times[min(len(handle_times) - 1, int(0.99 * len(handle_times)))] * 1000,
        throughput_jobs_s=len(jobs) / drain_s if drain_s > 0 else 0.0,
        drain_s=drain_s,
        cpu_ms_per_job=cpu_ms_per_job,
        errors=client.errors,
        busy_retries=client.busy_retries,
        first_error=client.first_error,
    )
