"""Helpers for the tests that run `manage.py serve` (or other commands) as real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(
    url: str,
    process: subprocess.Popen,
    timeout: float = 120,
    output: Callable[[], str] = lambda: "",
    processes: int = 1,
) -> None:
    """Poll `url` until it answers 200; fail at once if the process exits, or after `timeout` seconds.

    With `processes` > 1 (`serve --workers N`) also wait until `output` shows that many web processes started:
    the first one to answer says nothing of the others, which may still be loading their service (and would
    then build it in a world the first tests have already changed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answered = httpx.get(url, timeout=2).status_code == 200
            if answered and (processes == 1 or output().count("Started server process") >= processes):
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, f"process exited with {process.returncode}\n{output()}"
        assert time.monotonic() < deadline, f"{url} did not come up\n{output()}"
        time.sleep(0.3)


def serve_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The environment of a `manage.py serve` subprocess: the test session's Pixeltable (PIXELTABLE_HOME
    is inherited), the standalone site's settings, its own Django database and var dir."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "PXTSERVE_DJANGO_DB": str(tmp_path / "django.sqlite3"),
        "PXTSERVE_VAR_DIR": str(tmp_path),
        **overrides,
    }
    # the service comes from the command line, not from a parent process or the settings
    for name in ("PXTSERVE_SERVICE_JSON", "PXTSERVE_CONFIG", "PXTSERVE_SERVICE"):
        env.pop(name, None)
    return env


def stop_process(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM a server (serve stops its job workers and drains), SIGKILL it if it has not ended in `timeout` s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM a process started in its own session (and so its group), SIGKILL the group if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def stop_embedded_postgres(pgdata: Path) -> None:
    """Stop the PostgreSQL a Pixeltable started in `pgdata`, if it still runs: `serve` stops it as it ends, but not
    after a SIGKILL, nor while another process (a test's own Pixeltable user) was still listed as using it."""
    import psutil

    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return
    try:
        postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
        # a pid from the file may have been reused since: it is ours only if it serves this directory
        if str(pgdata.resolve()) not in " ".join(postmaster.cmdline()):
            return
        postmaster.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
        try:
            postmaster.wait(30)
        except psutil.TimeoutExpired:
            postmaster.send_signal(signal.SIGQUIT)  # "immediate": a backend that ignores the fast shutdown
            postmaster.wait(30)
    except (psutil.NoSuchProcess, ValueError, IndexError):
        pass


@contextlib.contextmanager
def serving_site(tmp: Path, service: str, settings: str, *args: str) -> Iterator[tuple[str, Path]]:
    """`manage.py serve` of the one service declared in `service` (TOML), under a settings module whose source
    is `settings`, on a free loopback port, without job workers: (its base URL, its log file) while it runs."""
    name = tomllib.loads(service)["service"][0]["name"]
    (tmp / f"{name}_settings.py").write_text(settings)
    (tmp / f"{name}.toml").write_text(service)
    port = free_port()
    env = serve_env(tmp, PYTHONPATH=f"{tmp}:{REPO}", DJANGO_SETTINGS_MODULE=f"{name}_settings")
    log_path = tmp / "serve.log"
    command = [sys.executable, "manage.py", "serve", name, "--config", str(tmp / f"{name}.toml")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-workers", *args]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process, output=lambda: log_path.read_text())
        yield f"http://127.0.0.1:{port}", log_path
    finally:
        stop_process(process)
