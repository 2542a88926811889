"""The two servers under test, each started as a subprocess on a free port, one at a time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
PORT_PLACEHOLDER = "{port}"


class ServerError(RuntimeError):
    """A server that did not start (or died); the message ends with the tail of its log."""


@dataclass(frozen=True)
class ServerTarget:
    """How to start one server: its command, with PORT_PLACEHOLDER where the port goes."""

    name: str
    command: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())
    processes: int = 1  # web server processes: each one initializes Pixeltable on its first request
    env: tuple[tuple[str, str], ...] = ()  # the server's environment variables, on top of the benchmark's

    def argv(self, port: int) -> list[str]:
        return [part.replace(PORT_PLACEHOLDER, str(port)) for part in self.command]


def reference_target() -> ServerTarget:
    return ServerTarget(
        "reference",
        (sys.executable, "bench/reference_app.py", "--host", "127.0.0.1", "--port", PORT_PLACEHOLDER),
    )


def pxtserve_target(
    config: Path,
    *,
    name: str = "pxtserve",
    job_workers: bool = False,
    web_workers: int | None = None,
    metrics: bool = True,
    job_runner: str | None = None,
) -> ServerTarget:
    """`manage.py serve bench --config FILE`; without job workers unless asked, --workers N if given, with
    `--job-runner` if given, and with PXTSERVE_METRICS=0 (no metrics, no /metrics) for `metrics=False`."""
    flags = serve_flags()
    command = [sys.executable, "manage.py", "serve", "bench", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", PORT_PLACEHOLDER]
    notes = []
    if not job_workers:
        if "--no-workers" in flags:
            command.append("--no-workers")
        else:
            notes.append("serve has no --no-workers flag yet: started without it")
    if web_workers is not None:
        command += ["--workers", str(web_workers)]
    if job_runner is not None:
        command += ["--job-runner", job_runner]
    # the reference logs no line per request (uvicorn with log_config=None, as `pxt service run`)
    if "--no-access-log" in flags:
        command.append("--no-access-log")
    env = () if metrics else (("PXTSERVE_METRICS", "0"),)
    return ServerTarget(name, tuple(command), tuple(notes), processes=web_workers or 1, env=env)


_serve_help: str | None = None


def serve_flags() -> str:
    """The text of `manage.py serve --help` (cached), to see which flags this checkout accepts."""
    global _serve_help
    if _serve_help is None:
        result = subprocess.run(
            [sys.executable, "manage.py", "serve", "--help"],
            check=False,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        _serve_help = result.stdout
    return _serve_help


def check_service_file(config: Path) -> subprocess.CompletedProcess[str]:
    """`serve bench --config FILE --dry-run`: does every route of the file register?"""
    return subprocess.run(
        [sys.executable, "manage.py", "serve", "bench", "--config", str(config), "--dry-run"],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One running server process; `with Server(...) as server:` starts it and always stops it."""

    def __init__(self, target: ServerTarget, log_dir: Path, *, ready_path: str = "/lookup?id=1") -> None:
        self.target = target
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{target.name.replace(' ', '_')}-{self.port}.log"
        self._ready_path = ready_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 180.0) -> None:
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.target.argv(self.port),
                cwd=REPO_ROOT,
                env={**os.environ, **dict(self.target.env)},
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerError(f"{self.target.name} exited with {self._process.returncode}\n{self.log_tail()}")
            if self._is_ready():
                self._prime_processes(deadline)
                return
            time.sleep(0.2)
        self.stop()
        raise ServerError(f"{self.target.name} not ready after {timeout_s:.0f} s\n{self.log_tail()}")

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (the serve command then stops its job workers), SIGKILL if it does not exit in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, n_lines: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n_lines:])

    def _prime_processes(self, deadline: float) -> None:
        """With several web processes, the first request each one serves is slow (it starts Pixeltable then):
        probe on fresh connections, a few at once, until a whole round is fast, so that the warm-up is not spent
        on it."""
        if self.target.processes <= 1:
            return
        with ThreadPoolExecutor(max_workers=2 * self.target.processes) as pool:
            while time.monotonic() < deadline:
                times = list(pool.map(lambda _: self._timed_probe(), range(2 * self.target.processes)))
                if max(times) < 1.0:
                    return

    def _timed_probe(self) -> float:
        began = time.monotonic()
        self._is_ready()
        return time.monotonic() - began

    def _is_ready(self) -> bool:
        try:
            return httpx.get(self.url + self._ready_path, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False
