"""Whether a process of this host still runs: a job's worker (pxtserve.jobs), a metrics file's writer (pxtserve.metrics)."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, the call only checks the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: it exists
    return True
