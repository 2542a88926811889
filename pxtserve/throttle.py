"""Housekeeping that runs at most once per interval in a process, whoever asks for it."""

from __future__ import annotations

import threading
import time


class Throttle:
    """`due()` is True at most once per `interval` seconds (the first time always)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: float | None = None
        self._lock = threading.Lock()

    def due(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last < self.interval:
                return False
            self._last = now
            return True
