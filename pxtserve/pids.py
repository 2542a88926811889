"""Whether a process of this host still runs: a job's worker (pxtserve.jobs), a metrics file's writer (pxtserve.metrics),
a user of the embedded database (pxtserve.pxt_internals)."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (ended, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, the call only checks the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: it exists
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # the state follows the command name, which is in parentheses and may itself hold ") "
            return stat.read().rpartition(b") ")[2][:1] != b"Z"
    except OSError:  # no /proc (not Linux), or the process ended just now: os.kill's answer stands
        return True
