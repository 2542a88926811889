"""What is sampled while a run goes: the server's peak RSS and new PostgreSQL connections."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil


class RssSampler:
    """Peak resident memory of a process and its children (job workers, uvicorn workers), sampled every 100 ms."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self._process = psutil.Process(pid)
        self._interval_s = interval_s
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def stop(self) -> float:
        """Stop sampling; the peak in MiB."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return self._peak / 2**20

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self) -> None:
        try:
            processes = [self._process, *self._process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        self._peak = max(self._peak, total)


@dataclass
class ConnectionStats:
    new_backends: int  # client backends seen during the window that were not there at its start
    peak_backends: int  # most client backends seen at once (the poller's own excluded)
    polls: int


class ConnectionPoller:
    """Polls pg_stat_activity of Pixeltable's database every 50 ms over one long-lived connection.

    A backend that lives less than the poll interval can be missed, so `new_backends` is a lower bound.
    """

    _QUERY = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"

    def __init__(self, conninfo: str, interval_s: float = 0.05) -> None:
        import psycopg

        self._conn = psycopg.connect(conninfo, autocommit=True)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._baseline: set[int] = set()
        self._seen: set[int] = set()
        self._peak = 0
        self._polls = 0

    def start(self) -> None:
        self._baseline = self._poll()
        self._seen = set(self._baseline)
        self._peak = len(self._baseline)
        self._polls = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="pg-poller", daemon=True)
        self._thread.start()

    def stop(self) -> ConnectionStats:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        return ConnectionStats(len(self._seen - self._baseline), self._peak, self._polls)

    def close(self) -> None:
        self._conn.close()

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            pids = self._poll()
            self._seen |= pids
            self._peak = max(self._peak, len(pids))
            self._polls += 1
            next_at += self._interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _poll(self) -> set[int]:
        with self._conn.cursor() as cur:
            cur.execute(self._QUERY)
            return {row[0] for row in cur.fetchall()}


class Window:
    """The measured window of one run: RSS of `pid` and the connection poller, started and stopped together."""

    def __init__(self, pid: int, poller: ConnectionPoller) -> None:
        self._rss = RssSampler(pid)
        self._poller = poller
        self.started_at = 0.0
        self.peak_rss_mb = 0.0
        self.connections = ConnectionStats(0, 0, 0)
        self.elapsed_s = 0.0

    def start(self) -> None:
        self._poller.start()
        self._rss.start()
        self.started_at = time.monotonic()

    def stop(self) -> None:
        self.elapsed_s = time.monotonic() - self.started_at
        self.peak_rss_mb = self._rss.stop()
        self.connections = self._poller.stop()
