"""The process tree's memory: `manage.py serve` (web process + job cluster) against the reference's one process.

Each target is started on a fresh port over one benchmark home (bench/home.py), exercised a little (lookups,
searches, inserts, background inserts whose jobs are waited for), and the summed memory of its whole process
tree (the server and every descendant) is sampled every 100 ms from start until it is stopped: RSS, and PSS
(each shared page counted once across the tree's processes; psutil's memory_full_info, where readable). The
peak of each sum is reported, with the processes at the PSS peak.

    python bench/tree_rss.py                 # from the repo root, with the project's venv
    python bench/tree_rss.py --json /tmp/tree.json --requests 300 --job-workers 2 --job-runners cluster
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psutil

from bench.bgjobs import _Client
from bench.home import create_and_preload, prepare_environment, stop_database_and_remove
from bench.servers import Server, ServerTarget, pxtserve_target, reference_target

SAMPLE_S = 0.1
MB = 1024 * 1024
# after the load, the tree is sampled this long more (jobs finish, workers settle)
SETTLE_S = 3.0


@dataclass
class ProcessMemory:
    pid: int
    command: str
    rss_mb: float
    pss_mb: float | None


@dataclass
class TreeMemory:
    target: str
    peak_rss_mb: float = 0.0
    peak_pss_mb: float | None = None
    processes_at_peak: list[ProcessMemory] = field(default_factory=list)
    jobs_done: int = 0
    errors: int = 0


def tree_memory(root_pid: int) -> list[ProcessMemory]:
    """RSS and PSS of `root_pid` and every descendant (processes that vanish while read are skipped)."""
    try:
        root = psutil.Process(root_pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    found = []
    for process in processes:
        try:
            try:
                full = process.memory_full_info()
                rss, pss = full.rss, getattr(full, "pss", None)
            except psutil.AccessDenied:
                rss, pss = process.memory_info().rss, None
            command = " ".join(process.cmdline()[:6])
        except psutil.NoSuchProcess:
            continue
        found.append(ProcessMemory(process.pid, command, rss / MB, None if pss is None else pss / MB))
    return found


class Sampler(threading.Thread):
    """Samples a tree's summed memory until stopped; keeps the peaks."""

    def __init__(self, root_pid: int, result: TreeMemory) -> None:
        super().__init__(daemon=True, name="tree-sampler")
        self.root_pid = root_pid
        self.result = result
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_S):
            processes = tree_memory(self.root_pid)
            if not processes:
                continue
            rss = sum(p.rss_mb for p in processes)
            self.result.peak_rss_mb = max(self.result.peak_rss_mb, rss)
            if all(p.pss_mb is not None for p in processes):
                pss = sum(p.pss_mb or 0.0 for p in processes)
                if self.result.peak_pss_mb is None or pss > self.result.peak_pss_mb:
                    self.result.peak_pss_mb = pss
                    self.result.processes_at_peak = processes
            elif not self.result.processes_at_peak or rss >= self.result.peak_rss_mb:
                self.result.processes_at_peak = processes


def exercise(base_url: str, n_requests: int, id_base: int, result: TreeMemory) -> None:
    """Lookups, searches and inserts, then background inserts (their jobs waited for, up to a minute)."""
    with httpx.Client(base_url=base_url, timeout=60.0) as http:
        for i in range(n_requests):
            responses = [
                http.get("/lookup", params={"id": 1 + i % 1000}),
                http.post("/search", json={"start": i % 1000}),
                http.post("/insert", json={"id": id_base + i, "name": f"tree-{i}"}),
            ]
            result.errors += sum(r.status_code != 200 for r in responses)
    # background inserts: submitted back to back, each then polled until its job is done
    jobs = _Client(base_url, id_base + n_requests)
    paths = [path for path in (jobs.submit() for _ in range(max(1, n_requests // 10))) if path is not None]
    jobs.wait_all(paths, timeout_s=60.0)
    result.jobs_done = len(paths) - jobs.errors
    result.errors += jobs.errors


def measure(target: ServerTarget, log_dir: Path, n_requests: int, id_base: int) -> TreeMemory:
    result = TreeMemory(target.name)
    server = Server(target, log_dir)
    sampler: Sampler | None = None
    try:
        server.start()
        sampler = Sampler(server.pid, result)
        sampler.start()
        exercise(server.url, n_requests, id_base, result)
        time.sleep(SETTLE_S)
    finally:
        if sampler is not None:
            sampler.stopped.set()
            sampler.join()
        server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="rounds of lookup+search+insert per target")
    parser.add_argument("--job-workers", type=int, help="PXTSERVE_JOB_WORKERS for serve (default: its own default)")
    parser.add_argument(
        "--job-runners",
        default="in-process,cluster",
        help="serve's job runners to measure, one target each (default in-process,cluster; serve's default: "
        "in-process)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep-home", action="store_true")
    args = parser.parse_args()

    home = prepare_environment(None)
    log_dir = home / "logs"
    log_dir.mkdir()
    try:
        create_and_preload()
        targets = [reference_target()]
        for runner in args.job_runners.split(","):
            serve = pxtserve_target(Path("bench/service.toml"), job_workers=True, job_runner=runner)
            serve = replace(serve, name=f"{serve.name} ({runner} jobs)")
            if args.job_workers is not None:
                serve = replace(serve, env=(*serve.env, ("PXTSERVE_JOB_WORKERS", str(args.job_workers))))
            targets.append(serve)
        results = []
        for n, target in enumerate(targets):
            print(f"measuring {target.name} ...", flush=True)
            results.append(measure(target, log_dir, args.requests, id_base=10**9 * (n + 1) + int(time.time())))
    finally:
        stop_database_and_remove(home, keep=args.keep_home)
    reference = results[0]
    for result in results:
        pss = "n/a" if result.peak_pss_mb is None else f"{result.peak_pss_mb:.0f} MB"
        ratio = ""
        if result.peak_pss_mb is not None and reference.peak_pss_mb:
            ratio = f" ({result.peak_pss_mb / reference.peak_pss_mb:.2f}x the reference's PSS)"
        print(
            f"{result.target}: peak RSS {result.peak_rss_mb:.0f} MB, peak PSS {pss}{ratio}; "
            f"{result.jobs_done} jobs done, {result.errors} errors"
        )
        for process in result.processes_at_peak:
            pss_text = "" if process.pss_mb is None else f", PSS {process.pss_mb:.0f} MB"
            print(f"  pid {process.pid}: RSS {process.rss_mb:.0f} MB{pss_text}  {process.command}")
    if args.json:
        with contextlib.suppress(OSError):
            args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
