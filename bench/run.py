"""The benchmark of issue 8: five routes served three ways (direct, FastAPIRouter, pxtserve), measured with wrk.

    pip install -r bench/requirements-bench.txt
    python bench/run.py            # 3 repetitions x 10 s per cell
    python bench/run.py --quick    # smoke run: 1 repetition x 3 s

Run by hand from the repo root; see bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/run.py`: import bench.*

from bench import home as bench_home
from bench.loadgen import (
    ROUTES,
    WRK_MISSING,
    RunResult,
    delete_misses,
    direct_threads,
    run_direct,
    run_wrk,
    wrk_available,
    wrk_threads,
)
from bench.report import METRICS_OFF, Cell
from bench.servers import ServerTarget

BENCH_DIR = Path(__file__).resolve().parent
SERVICE_FILE = BENCH_DIR / "service.toml"
ALL_TARGETS = ("direct", "reference", "pxtserve")
# delete runs: rows preloaded per run, from the fastest delete rate seen so far (req/s), with this margin
DELETE_MARGIN = 2.0
DELETE_RATE_GUESS = 300.0


@dataclass
class Options:
    repeat: int
    duration: float
    warmup: float
    clients: list[int]
    routes: list[str]
    targets: list[str]
    pxtserve_workers: list[int]
    jobs: bool
    jobs_n: int
    batch: bool
    metrics_off: bool
    keep_home: bool
    home: Path | None


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, help="repetitions per cell (default 3; --quick: 1)")
    parser.add_argument("--duration", type=float, help="seconds measured per cell (default 10; --quick: 3)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each cell (default 2; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s per cell, 1 repetition")
    parser.add_argument("--clients", default="1,4,16", help="concurrency levels (default 1,4,16)")
    parser.add_argument("--routes", default=",".join(ROUTES), help=f"routes to run (default {','.join(ROUTES)})")
    parser.add_argument("--targets", default=",".join(ALL_TARGETS), help="direct,reference,pxtserve (default all)")
    parser.add_argument(
        "--pxtserve-workers",
        default="2",
        help="also run `serve --workers N` as target 'pxtserve xN' for each N > 1 (default 2; e.g. 1,2,4: 1 is "
        "'pxtserve' itself) if serve accepts --workers, and a table of reads against N; '' for none",
    )
    parser.add_argument("--no-jobs", action="store_true", help="skip the background-jobs figure")
    parser.add_argument("--jobs-n", type=int, default=200, help="jobs per background-jobs measurement (default 200)")
    parser.add_argument("--no-batch", action="store_true", help="skip the batch-insert figure (bench/batch.py)")
    parser.add_argument(
        "--metrics-off", action="store_true", help=f"also run pxtserve with PXTSERVE_METRICS=0 as '{METRICS_OFF}'"
    )
    parser.add_argument("--keep-home", action="store_true", help="keep the PIXELTABLE_HOME (and server logs)")
    parser.add_argument("--home", type=Path, help="PIXELTABLE_HOME to use (default: a new temporary directory)")
    args = parser.parse_args(argv)
    routes = _csv(args.routes)
    targets = _csv(args.targets)
    for name, given, allowed in (("route", routes, ROUTES), ("target", targets, ALL_TARGETS)):
        unknown = [x for x in given if x not in allowed]
        if unknown:
            parser.error(f"unknown {name}(s): {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return Options(
        repeat=args.repeat or (1 if args.quick else 3),
        duration=args.duration or (3.0 if args.quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0),
        clients=[int(c) for c in _csv(args.clients)],
        routes=routes,
        targets=targets,
        pxtserve_workers=[int(n) for n in _csv(args.pxtserve_workers)],
        jobs=not args.no_jobs,
        jobs_n=args.jobs_n,
        batch=not args.no_batch,
        metrics_off=args.metrics_off,
        keep_home=args.keep_home,
        home=args.home,
    )


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


class Benchmark:
    """One benchmark run: the shared home, the targets, the cells, in the order they are run."""

    def __init__(self, options: Options, home: Path) -> None:
        from bench.home import IdAllocator, db_conninfo
        from bench.monitor import ConnectionPoller

        self.options = options
        self.home = home
        self.log_dir = home / "server-logs"
        self.log_dir.mkdir(exist_ok=True)
        self.ids = IdAllocator(int(time.time()))
        self.poller = ConnectionPoller(db_conninfo())
        self.cells: list[Cell] = []
        self.notes: list[str] = []
        self.delete_rate = DELETE_RATE_GUESS
        self.service_file = SERVICE_FILE
        self.jobs_supported = True
        self.servers: dict[str, ServerTarget] = {}

    # ------------------------------------------------------------------------------------------ set-up

    def set_up_targets(self) -> list[str]:
        """The targets to run, in order; pxtserve's service file checked (and trimmed if /insert-bg won't register)."""
        from bench.servers import pxtserve_target, reference_target, serve_flags

        names = [t for t in ALL_TARGETS if t in self.options.targets]
        if "reference" in names:
            self.servers["reference"] = reference_target()
        if "pxtserve" in names:
            self._check_service_file()
            self.servers["pxtserve"] = pxtserve_target(self.service_file)
            if self.options.metrics_off:
                self.servers[METRICS_OFF] = pxtserve_target(self.service_file, name=METRICS_OFF, metrics=False)
                names.insert(names.index("pxtserve") + 1, METRICS_OFF)
            for n in self.options.pxtserve_workers:
                if n == 1:
                    continue  # one process is the `pxtserve` target itself
                if "--workers" in serve_flags().replace("--no-workers", ""):
                    name = f"pxtserve x{n}"
                    self.servers[name] = pxtserve_target(self.service_file, name=name, web_workers=n)
                    names.append(name)
                else:
                    self._note(f"serve has no --workers flag: 'pxtserve x{n}' not run")
        for target in self.servers.values():
            for note in target.notes:
                self._note(f"{target.name}: {note}")
        return names

    def _check_service_file(self) -> None:
        from bench.servers import check_service_file

        result = check_service_file(self.service_file)
        if result.returncode == 0:
            return
        trimmed = self.home / "service-no-bg.toml"
        trimmed.write_text(_without_background_routes(self.service_file.read_text()))
        retry = check_service_file(trimmed)
        if retry.returncode != 0:
            raise SystemExit(f"bench/service.toml does not load:\n{result.stderr[-3000:]}")
        self.service_file = trimmed
        self.jobs_supported = False
        self._note(
            "the background route /insert-bg did not register, so it was left out and the jobs figure skipped: "
            + result.stderr.strip().splitlines()[-1]
        )

    def _note(self, text: str) -> None:
        print(f"note: {text}", flush=True)
        self.notes.append(text)

    # ------------------------------------------------------------------------------------------ the cells

    def run_all(self, targets: list[str]) -> None:
        opts = self.options
        n_cells = opts.repeat * len(opts.routes) * len(opts.clients) * len(targets)
        done = 0
        for rep in range(opts.repeat):
            # interleaved: every cell runs each target in turn, and the order rotates with the repetition
            order = targets[rep % len(targets) :] + targets[: rep % len(targets)]
            for route in opts.routes:
                for clients in opts.clients:
                    for target in order:
                        done += 1
                        cell = self.run_cell(target, route, clients, rep)
                        self.cells.append(cell)
                        print(f"[{done}/{n_cells}] {_describe(cell)}", flush=True)

    def run_cell(self, target: str, route: str, clients: int, rep: int) -> Cell:
        try:
            if target == "direct":
                return self._direct_cell(route, clients, rep)
            return self._server_cell(target, route, clients, rep)
        except Exception as exc:  # noqa: BLE001 - a failed cell is reported, the benchmark goes on
            return Cell(target, route, clients, rep, ok=False, failure=f"{type(exc).__name__}: {exc}"[:3000])

    def _direct_cell(self, route: str, clients: int, rep: int) -> Cell:
        import os

        from bench.monitor import Window

        base = self.ids.next_base()
        per_thread = self._prepare_rows(
            route, base, direct_threads(clients), self.options.warmup + self.options.duration
        )
        window = Window(os.getpid(), self.poller)
        try:
            result = run_direct(
                route, clients, self.options.warmup, self.options.duration, base, (window.start, window.stop)
            )
        finally:
            self._clean_up_rows(route, base)
        if per_thread is not None:
            result.misses = delete_misses(result.detail["thread_counters"], per_thread)
        return self._cell("direct", route, clients, rep, result, window)

    def _server_cell(self, target: str, route: str, clients: int, rep: int) -> Cell:
        from bench.monitor import Window
        from bench.servers import Server, ServerError

        opts = self.options
        warm_base, base = self.ids.next_base(), self.ids.next_base()
        threads = wrk_threads(clients)
        warm_rows = self._prepare_rows(route, warm_base, threads, opts.warmup)
        per_thread = self._prepare_rows(route, base, threads, opts.duration)
        try:
            with Server(self.servers[target], self.log_dir) as server:
                if opts.warmup > 0:
                    run_wrk(server.url, route, clients, opts.warmup, _script_args(route, warm_base, warm_rows))
                window = Window(server.pid, self.poller)
                window.start()
                try:
                    result = run_wrk(server.url, route, clients, opts.duration, _script_args(route, base, per_thread))
                finally:
                    window.stop()
                if not server.is_alive():
                    raise ServerError(f"{target} died during the run\n{server.log_tail()}")
                if result.errors:
                    result.detail["server_log_tail"] = server.log_tail(15)
        finally:
            for b in (warm_base, base):
                self._clean_up_rows(route, b)
        if per_thread is not None:
            result.misses = delete_misses(result.detail["thread_counters"], per_thread)
        return self._cell(target, route, clients, rep, result, window)

    def _cell(self, target: str, route: str, clients: int, rep: int, result: RunResult, window: Any) -> Cell:
        if route == "delete":
            self.delete_rate = max(self.delete_rate, result.rps)
        duration = result.duration_s or window.elapsed_s
        return Cell(
            target,
            route,
            clients,
            rep,
            ok=True,
            rps=result.rps,
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            errors=result.errors,
            misses=result.misses,
            peak_rss_mb=window.peak_rss_mb,
            new_conns_per_s=window.connections.new_backends / duration if duration else 0.0,
            peak_conns=window.connections.peak_backends,
            detail={**result.detail, "requests": result.requests, "duration_s": result.duration_s},
        )

    def _prepare_rows(self, route: str, base: int, n_threads: int, seconds: float) -> int | None:
        """For a delete run, preload the rows it deletes; the rows per thread, or None for other routes."""
        if route != "delete" or seconds <= 0:
            return None
        per_thread = max(200, math.ceil(self.delete_rate * DELETE_MARGIN * seconds / n_threads))
        bench_home.preload_block(base, n_threads, per_thread)
        return per_thread

    def _clean_up_rows(self, route: str, base: int) -> None:
        """Insert and delete runs leave rows under their base: removed, so every run sees the preloaded table."""
        if route in ("insert", "delete"):
            bench_home.remove_range(base)

    # ------------------------------------------------------------------------------------------ jobs

    def run_jobs(self) -> dict[str, dict[str, Any]]:
        """The background-jobs figure, for pxtserve (with its job workers) and the reference."""
        from bench.bgjobs import measure_jobs
        from bench.servers import Server, pxtserve_target, serve_flags

        results: dict[str, dict[str, Any]] = {}
        candidates: list[ServerTarget] = []
        if "pxtserve" in self.servers:
            candidates.append(pxtserve_target(self.service_file, name="pxtserve", job_workers=True))
            if "--job-runner" in serve_flags():
                # serve's default runs the jobs in its web process; its job cluster is the other runner
                cluster = pxtserve_target(
                    self.service_file, name="pxtserve cluster", job_workers=True, job_runner="cluster"
                )
                candidates.append(cluster)
        if "reference" in self.servers:
            candidates.append(self.servers["reference"])
        for target in candidates:
            if target.name.startswith("pxtserve") and not self.jobs_supported:
                results[target.name] = {"skipped": "the background route did not register"}
                continue
            base = self.ids.next_base()
            print(f"background jobs: {target.name} ...", flush=True)
            try:
                with Server(target, self.log_dir) as server:
                    measured = measure_jobs(server.url, base, n_jobs=self.options.jobs_n, server_pid=server.pid)
                    results[target.name] = measured.as_dict()
            except Exception as exc:  # noqa: BLE001 - reported in the figure, the run goes on
                results[target.name] = {"skipped": f"{type(exc).__name__}: {exc}"[:2000]}
            finally:
                bench_home.remove_range(base)
            print(f"background jobs: {target.name}: {results[target.name]}", flush=True)
        return results

    def run_batch(self) -> dict[str, Any]:
        """The batch-insert figure (bench/batch.py), against pxtserve."""
        from bench.batch import measure_batch
        from bench.servers import Server

        base = self.ids.next_base()
        print("batch inserts ...", flush=True)
        try:
            with Server(self.servers["pxtserve"], self.log_dir) as server:
                result = measure_batch(server.url, base).as_dict()
        except Exception as exc:  # noqa: BLE001 - reported in the figure, the run goes on
            result = {"skipped": f"{type(exc).__name__}: {exc}"[:2000]}
        finally:
            bench_home.remove_range(base)
        print(f"batch inserts: {result}", flush=True)
        return result

    def close(self) -> None:
        self.poller.close()


def _script_args(route: str, base: int, per_thread: int | None) -> list[str]:
    if route == "insert":
        return [str(base)]
    if route == "delete":
        return [str(base), str(per_thread)]
    return [str(base % 100_000)]  # a seed for the random ids


def _without_background_routes(text: str) -> str:
    """service.toml without its `background = true` routes (each [[service.routes]] block is split off)."""
    blocks = text.split("[[service.routes]]")
    kept = [blocks[0]] + [b for b in blocks[1:] if "background = true" not in b]
    return "[[service.routes]]".join(kept)


def _describe(cell: Cell) -> str:
    head = f"{cell.target:<12} {cell.route:<7} c={cell.clients:<3} rep {cell.rep + 1}"
    if not cell.ok:
        return f"{head}  FAILED: {(cell.failure or '').splitlines()[0]}"
    extra = f", {cell.misses} delete misses" if cell.misses else ""
    first_error = cell.detail.get("first_error")
    extra += f", first error: {first_error}" if first_error else ""
    return (
        f"{head}  {cell.rps:8.1f} req/s  p50 {cell.p50_ms:7.1f} ms  p99 {cell.p99_ms:7.1f} ms  "
        f"errors {cell.errors}  RSS {cell.peak_rss_mb:6.0f} MiB  new conns/s {cell.new_conns_per_s:5.1f}{extra}"
    )


def report(
    bench: Benchmark,
    targets: list[str],
    jobs: dict[str, dict[str, Any]],
    machine: dict[str, Any],
    batch: dict[str, Any] | None = None,
) -> None:
    from bench import report as rep
    from bench.batch import batch_table

    opts = bench.options
    config = {"repeat": opts.repeat, "duration": opts.duration, "warmup": opts.warmup}
    table = rep.summarize(bench.cells)
    markdown = rep.markdown_table(table, targets, machine, config)
    if scaling := rep.scaling_table(table, targets):
        markdown += "\n\n" + scaling
    if jobs:
        markdown += "\n\n" + rep.jobs_table(jobs)
    if batch:
        markdown += "\n\n" + batch_table(batch)
    if bench.notes:
        markdown += "\n\nNotes:\n" + "\n".join(f"- {note}" for note in bench.notes)
    failures = [c for c in bench.cells if not c.ok]
    path = rep.write_json(
        {
            "machine": machine,
            "config": {**config, "clients": opts.clients, "routes": opts.routes, "targets": targets},
            "summary": rep.table_as_json(table),
            "jobs": jobs,
            "batch": batch,
            "notes": bench.notes,
            "cells": bench.cells,
        }
    )
    print("\n" + markdown + "\n")
    for cell in failures:
        print(f"FAILED {cell.target} {cell.route} c={cell.clients} rep {cell.rep + 1}:\n{cell.failure}\n")
    print(f"results: {path}")


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    needs_wrk = any(t != "direct" for t in options.targets)
    if needs_wrk and not wrk_available():
        print(WRK_MISSING, file=sys.stderr)
        return 2
    home = bench_home.prepare_environment(options.home)
    print(f"PIXELTABLE_HOME={home}", flush=True)
    bench: Benchmark | None = None
    try:
        from bench.report import machine_info

        started = time.monotonic()
        bench_home.create_and_preload()
        machine = machine_info()
        bench = Benchmark(options, home)
        targets = bench.set_up_targets()
        bench.run_all(targets)
        jobs = bench.run_jobs() if options.jobs and any(t in bench.servers for t in ("pxtserve", "reference")) else {}
        batch = bench.run_batch() if options.batch and "pxtserve" in bench.servers else None
        report(bench, targets, jobs, machine, batch)
        print(f"total time: {time.monotonic() - started:.0f} s")
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - shown, and the exit code says so; the finally block still cleans up
        traceback.print_exc()
        return 1
    finally:
        if bench is not None:
            bench.close()
        if options.keep_home:
            print(f"kept PIXELTABLE_HOME={home} (server logs in {home / 'server-logs'})")
        bench_home.stop_database_and_remove(home, keep=options.keep_home)


if __name__ == "__main__":
    sys.exit(main())
