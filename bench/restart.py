"""Restart: seconds from launching a server to its first answer, pxtserve against the reference.

What a restart after a crash costs (bench/soak.py --kill measures it under load, for pxtserve alone): each
round launches every target in turn, as a supervisor would after a SIGKILL, polls `GET /lookup?id=1` every
20 ms until it answers 200, then SIGKILLs the target and everything it started. Targets alternate within a
round, so drift on the (shared, noisy) machine hits them alike.

    python bench/restart.py                  # 7 rounds; pxtserve as `serve` runs it (with its job workers)
    python bench/restart.py --rounds 11 --no-job-workers --json /tmp/restart.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.home import create_and_preload, prepare_environment
from bench.servers import REPO_ROOT, ServerTarget, free_port, pxtserve_target, reference_target

READY_PATH = "/lookup?id=1"
POLL_S = 0.02
TIMEOUT_S = 120.0


def time_to_first_answer(target: ServerTarget, log: Path) -> float:
    """Launch `target`, wait for its first 200; then kill it and all it started. The seconds to the 200."""
    import httpx
    import psutil

    port = free_port()
    started = time.monotonic()
    with open(log, "ab") as out:
        process = subprocess.Popen(
            target.argv(port), cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        while time.monotonic() - started < TIMEOUT_S:
            if process.poll() is not None:
                raise RuntimeError(f"{target.name} exited with {process.returncode}; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}{READY_PATH}", timeout=2).status_code == 200:
                    return time.monotonic() - started
            time.sleep(POLL_S)
        raise RuntimeError(f"{target.name} did not answer within {TIMEOUT_S:.0f} s; see {log}")
    finally:
        # the job workers lead their own process group: kill the whole tree, as a crash of the machine's
        # supervisor target would leave nothing behind, and wait so the next launch has the cores to itself
        victims = [process]
        with contextlib.suppress(psutil.NoSuchProcess):
            victims += psutil.Process(process.pid).children(recursive=True)
        for victim in victims:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                os.kill(victim.pid, signal.SIGKILL)
        process.wait()
        psutil.wait_procs([v for v in victims if v is not process], timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-job-workers", action="store_true", help="serve --no-workers (the web process alone)")
    parser.add_argument("--home", type=Path, help="PIXELTABLE_HOME to use (default: a fresh temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    home = prepare_environment(args.home)
    create_and_preload()
    targets = [
        reference_target(),
        pxtserve_target(REPO_ROOT / "bench" / "service.toml", job_workers=not args.no_job_workers),
    ]
    # one launch each first: bytecode caches and the OS page cache are warm for every measured round
    for target in targets:
        time_to_first_answer(target, home / f"{target.name}.log")
    seconds: dict[str, list[float]] = {target.name: [] for target in targets}
    for _ in range(args.rounds):
        for target in targets:
            seconds[target.name].append(time_to_first_answer(target, home / f"{target.name}.log"))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    result = {
        "rounds": args.rounds,
        "job_workers": not args.no_job_workers,
        "seconds": {name: [round(v, 3) for v in values] for name, values in seconds.items()},
        "median_s": {name: round(v, 3) for name, v in medians.items()},
        "pxtserve_over_reference": round(medians["pxtserve"] / medians["reference"], 3),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
