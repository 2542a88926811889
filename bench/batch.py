"""The batch figure: rows/s of 100-row batches (`batch = true`, POST /insert-batch) against the single-row route
(POST /insert, one row per request) and against a direct `items.insert()` of 100 rows, one client each.

A plain sequential Python client (httpx), like the background-jobs figure: it measures what one caller with many
rows to write gets from each way of sending them, not the server's behaviour under concurrency (the cells do).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from bench.home import THREAD_STRIDE

BATCH_PATH = "/insert-batch"
SINGLE_PATH = "/insert"


@dataclass
class BatchResult:
    batch_size: int
    rows: int  # rows written per way
    batch_rows_s: float  # POST /insert-batch, `batch_size` rows per request
    single_rows_s: float  # POST /insert, one row per request
    direct_rows_s: float  # items.insert(batch_size rows) in the benchmark process
    errors: int
    first_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rows(first: int, n: int) -> list[dict[str, Any]]:
    return [{"id": first + k, "name": f"batch-{first + k}"} for k in range(n)]


def measure_batch(base_url: str, id_base: int, *, rows: int = 2000, batch_size: int = 100) -> BatchResult:
    """Write `rows` rows three ways, each under its own block of ids after `id_base` (removed by the caller)."""
    errors: list[str] = []
    http = httpx.Client(base_url=base_url, timeout=120.0)

    def post(path: str, body: Any) -> None:
        response = http.post(path, json=body)
        if response.status_code != 200:
            errors.append(f"{path}: HTTP {response.status_code} {response.text[:200]}")

    def timed(ids: int, write: Any) -> float:
        first = id_base + ids * THREAD_STRIDE
        began = time.perf_counter()
        for start in range(0, rows, batch_size):
            write(_rows(first + start, min(batch_size, rows - start)))
        return rows / (time.perf_counter() - began)

    # a short warm-up of both routes: the first requests pay for Pixeltable's start in the server
    post(SINGLE_PATH, _rows(id_base + 9 * THREAD_STRIDE, 1)[0])
    post(BATCH_PATH, {"rows": _rows(id_base + 9 * THREAD_STRIDE + 1, batch_size)})
    batch = timed(1, lambda chunk: post(BATCH_PATH, {"rows": chunk}))
    single = timed(2, lambda chunk: [post(SINGLE_PATH, row) for row in chunk])
    http.close()
    from bench.bench_app.schema import items

    items.insert(_rows(id_base + 8 * THREAD_STRIDE, batch_size), return_rows=True)  # warm, as the routes are
    direct = timed(3, lambda chunk: items.insert(chunk, return_rows=True))
    return BatchResult(
        batch_size=batch_size,
        rows=rows,
        batch_rows_s=batch,
        single_rows_s=single,
        direct_rows_s=direct,
        errors=len(errors),
        first_error=errors[0] if errors else None,
    )


def batch_table(result: dict[str, Any]) -> str:
    """The figure as Markdown."""
    if "skipped" in result:
        return f"Batch inserts: skipped ({result['skipped']})"
    n = result["batch_size"]
    lines = [
        f"Batch inserts ({result['rows']} rows each way, one sequential client; errors: {result['errors']}):",
        "",
        "| how | rows/s |",
        "|---|---|",
        f"| pxtserve `POST /insert-batch`, {n} rows per request | {result['batch_rows_s']:.0f} |",
        f"| pxtserve `POST /insert`, one row per request | {result['single_rows_s']:.0f} |",
        f"| direct `items.insert()` of {n} rows | {result['direct_rows_s']:.0f} |",
    ]
    if result.get("first_error"):
        lines.append(f"\nfirst error: {result['first_error']}")
    return "\n".join(lines)
