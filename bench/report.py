"""Medians over the repetitions, the Markdown table, and the JSON file."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REFERENCE = "reference"
OURS = "pxtserve"
# pxtserve with PXTSERVE_METRICS=0 (`run.py --metrics-off`): what the metrics cost is OURS against it
METRICS_OFF = "pxtserve metrics-off"


@dataclass
class Cell:
    """One measured run: a target serving a route to `clients` concurrent clients, in repetition `rep`."""

    target: str
    route: str
    clients: int
    rep: int
    ok: bool
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    misses: int = 0
    peak_rss_mb: float = 0.0
    new_conns_per_s: float = 0.0
    peak_conns: int = 0
    failure: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Summary:
    """The medians of one (target, route, clients) over its successful repetitions; errors and misses summed."""

    runs: int
    failed: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    misses: int
    peak_rss_mb: float
    new_conns_per_s: float
    peak_conns: float


def summarize(cells: list[Cell]) -> dict[tuple[str, int], dict[str, Summary]]:
    """{(route, clients): {target: Summary}}, in the order the cells were first run."""
    groups: dict[tuple[str, int], dict[str, list[Cell]]] = {}
    for cell in cells:
        groups.setdefault((cell.route, cell.clients), {}).setdefault(cell.target, []).append(cell)
    return {key: {target: _summary(runs) for target, runs in by_target.items()} for key, by_target in groups.items()}


def _summary(runs: list[Cell]) -> Summary:
    ok = [c for c in runs if c.ok]

    def med(attr: str) -> float:
        return statistics.median(getattr(c, attr) for c in ok) if ok else float("nan")

    return Summary(
        runs=len(ok),
        failed=len(runs) - len(ok),
        rps=med("rps"),
        p50_ms=med("p50_ms"),
        p99_ms=med("p99_ms"),
        errors=sum(c.errors for c in ok),
        misses=sum(c.misses for c in ok),
        peak_rss_mb=med("peak_rss_mb"),
        new_conns_per_s=med("new_conns_per_s"),
        peak_conns=med("peak_conns"),
    )


def machine_info() -> dict[str, Any]:
    def wrk_version() -> str:
        try:
            out = subprocess.run(["wrk", "--version"], check=False, capture_output=True, text=True, timeout=10)
            # "wrk debian/4.1.0-3+b2 [epoll] Copyright ..." -> "wrk debian/4.1.0-3+b2"
            return " ".join((out.stdout or out.stderr).split()[:2])
        except (OSError, IndexError, subprocess.SubprocessError):
            return "not installed"

    import pixeltable

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.machine(),  # uname -m
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "pixeltable": pixeltable.__version__,
        "wrk": wrk_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _fmt(x: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"  # NaN: no successful run


def _joined(summaries: list[Summary | None], attr: str, digits: int = 0) -> str:
    return " / ".join("—" if s is None else _fmt(float(getattr(s, attr)), digits) for s in summaries)


def markdown_table(
    table: dict[tuple[str, int], dict[str, Summary]],
    targets: list[str],
    machine: dict[str, Any],
    config: dict[str, Any],
) -> str:
    """The results as a Markdown table (one row per route and client count), with the run's date and machine."""
    servers = [t for t in targets if t != REFERENCE and t != "direct"]
    short = "/".join(_short(t) for t in targets)
    header = ["route", "clients", *(f"{t} req/s" for t in targets)]
    header += [f"{t}/ref" for t in servers if REFERENCE in targets]
    on_off = OURS in targets and METRICS_OFF in targets
    header += ["metrics on/off"] if on_off else []
    header += [f"{t} p50/p99 ms" for t in targets]
    header += [f"errors {short}", f"RSS MiB {short}", f"new conns/s {short}"]
    lines = [
        (
            f"Run {machine['date']} on {machine['machine']}, {machine['nproc']} CPUs, Python {machine['python']}, "
            f"Pixeltable {machine['pixeltable']}, {machine['wrk']}; load average at start "
            f"{', '.join(map(str, machine['loadavg_at_start']))}."
        ),
        (
            f"{config['repeat']} repetition(s) of {config['duration']:g} s each (after {config['warmup']:g} s of "
            "warm-up), medians; errors summed over repetitions. `direct` = the same Pixeltable calls in-process "
            "from N threads; `reference` = pixeltable.serving.FastAPIRouter under uvicorn; `pxtserve` = "
            "`manage.py serve`."
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for (route, clients), by_target in table.items():
        row_summaries = [by_target.get(t) for t in targets]
        row = [route, str(clients)]
        row += [_rps_cell(s) for s in row_summaries]
        ref = by_target.get(REFERENCE)
        row += [_ratio(by_target.get(t), ref) for t in servers if REFERENCE in targets]
        row += [_ratio(by_target.get(OURS), by_target.get(METRICS_OFF))] if on_off else []
        row += [_latency_cell(s) for s in row_summaries]
        row += [
            _errors_cell(row_summaries),
            _joined(row_summaries, "peak_rss_mb"),
            _joined(row_summaries, "new_conns_per_s", 1),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# the routes whose scaling with processes the scaling table shows: reads, which share no per-table writer
READ_ROUTES = ("lookup", "search")


def scaling_table(table: dict[tuple[str, int], dict[str, Summary]], targets: list[str]) -> str:
    """Reads against the number of `serve` processes: req/s of `pxtserve` (1 process) and of each `pxtserve xN`,
    and each one's ratio to the single process ("" when no `pxtserve xN` ran)."""
    multi = sorted((t for t in targets if t.startswith(f"{OURS} x")), key=lambda t: int(t.rsplit("x", 1)[1]))
    if OURS not in targets or not multi:
        return ""
    header = ["route", "clients", "1 process req/s", *(f"{t.rsplit(' ', 1)[1]} req/s" for t in multi)]
    header += [f"{t.rsplit(' ', 1)[1]} / 1" for t in multi]
    lines = [
        "Reads against `serve --workers N` (the same cells as above):",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for (route, clients), by_target in table.items():
        if route not in READ_ROUTES:
            continue
        one = by_target.get(OURS)
        row = [route, str(clients), _rps_cell(one)]
        row += [_rps_cell(by_target.get(t)) for t in multi]
        row += [_ratio(by_target.get(t), one) for t in multi]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _short(target: str) -> str:
    return {"direct": "d", REFERENCE: "ref", OURS: "ours"}.get(target, target)


def _rps_cell(s: Summary | None) -> str:
    if s is None:
        return "—"
    text = _fmt(s.rps, 1)
    return text + (f" ({s.failed} failed)" if s.failed else "")


def _ratio(ours: Summary | None, ref: Summary | None) -> str:
    if ours is None or ref is None or not ref.rps or ours.rps != ours.rps or ref.rps != ref.rps:
        return "n/a"
    return f"{ours.rps / ref.rps:.2f}"


def _latency_cell(s: Summary | None) -> str:
    return "—" if s is None else f"{_fmt(s.p50_ms, 1)} / {_fmt(s.p99_ms, 1)}"


def _errors_cell(summaries: list[Summary | None]) -> str:
    parts = []
    for s in summaries:
        if s is None:
            parts.append("—")
        else:
            parts.append(str(s.errors) + (f" (+{s.misses} misses)" if s.misses else ""))
    return " / ".join(parts)


def jobs_table(jobs: dict[str, dict[str, Any]]) -> str:
    lines = [
        (
            "| background insert (/insert-bg) | handle p50 ms | handle p99 ms | jobs/s (submit N, until all done) "
            "| server CPU ms per job | errors | 503 retries |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for target, result in jobs.items():
        if "skipped" in result:
            lines.append(f"| {target} | skipped: {result['skipped']} | | | | | |")
            continue
        cpu = result.get("cpu_ms_per_job")
        lines.append(
            f"| {target} | {result['handle_p50_ms']:.1f} | {result['handle_p99_ms']:.1f} | "
            f"{result['throughput_jobs_s']:.1f} (N={result['n_jobs']}, {result['drain_s']:.1f} s) | "
            f"{'-' if cpu is None else f'{cpu:.1f}'} | {result['errors']} | {result['busy_retries']} |"
        )
    return "\n".join(lines)


def write_json(payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(payload, indent=2, default=_jsonable))
    return path


def table_as_json(table: dict[tuple[str, int], dict[str, Summary]]) -> list[dict[str, Any]]:
    return [
        {"route": route, "clients": clients, "targets": {t: _no_nan(asdict(s)) for t, s in by_target.items()}}
        for (route, clients), by_target in table.items()
    ]


def _no_nan(values: dict[str, Any]) -> dict[str, Any]:
    """NaN (no successful run) as null: strict JSON has no NaN."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return str(value)
