"""The directory prometheus-client's multiprocess mode shares among the processes of one `serve`.

Every process of a serve (the web server, its `--workers N` processes, the job cluster and its
workers) writes its metrics to files in PROMETHEUS_MULTIPROC_DIR, and a scrape of any web
process reads them all (pxtserve.metrics). prometheus-client reads the variable when a metric is
made: so `serve` calls `prepare()` before any is (pxtserve.metrics makes its metrics on first use),
and the processes it starts inherit it.

The directory is fresh for every run: a new temporary one, removed when serve ends (or by the next serve
when this one was killed), or the one PROMETHEUS_MULTIPROC_DIR already names (a deployment's choice),
emptied of an earlier run's files.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from pxtserve import conf
from pxtserve.pids import process_alive

ENV = "PROMETHEUS_MULTIPROC_DIR"
_PREFIX = "pxtserve-metrics-"

# the directory this process made, and removes at the end
_made: Path | None = None


def prepare() -> Path | None:
    """Set up the directory for this serve's processes (none when metrics are off); the directory."""
    global _made
    if not conf.settings().METRICS:
        return None
    given = os.environ.get(ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        # an earlier run's counts are not this run's (and its processes' pids may be reused)
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        _remove_abandoned()
        # the owner's pid in the name: a later serve removes what a killed one left (_remove_abandoned)
        directory = _made = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
        os.environ[ENV] = str(directory)
        atexit.register(remove)
    return directory


def _remove_abandoned() -> None:
    """Remove the directories of serves that ended without removing theirs (SIGKILL runs no exit handler)."""
    for directory in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        pid = directory.name.removeprefix(_PREFIX).partition("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(directory, ignore_errors=True)


def remove() -> None:
    """Remove the directory `prepare` made (not one the environment named)."""
    global _made
    if _made is not None:
        shutil.rmtree(_made, ignore_errors=True)
        _made = None
