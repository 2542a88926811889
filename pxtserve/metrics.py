"""Prometheus metrics: what pxtserve counts, the request middleware, and the `/metrics` view.

Requests are counted by MetricsMiddleware (in PXTSERVE["API_MIDDLEWARE"]) under the route's declared path
(pxtserve.request_route), never the raw URL. Writes, the Pixeltable call pool, exports and jobs are counted
where they happen, through the small functions below; job counts by status are read from the job table when
scraped. With PXTSERVE["METRICS"] off nothing is counted and `/metrics` answers 404.

Under `serve` every process of the run (web workers, the job cluster) writes its values to files in
PROMETHEUS_MULTIPROC_DIR (pxtserve.metrics_dir sets it up), and a scrape of any web process adds them up;
without that variable (a site of your own, one process) values stay in the process, in prometheus-client's
default registry.

The hot path pays a perf_counter, a dict lookup per metric and five of prometheus-client's updates (in-flight
up and down, the counter, the histogram's sum and bucket): about 10 µs per request with the multiprocess files
on the benchmark's machine, against a lookup's 3-4 ms (bench/README.md, "Metrics on and off").
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.exceptions import MiddlewareNotUsed
from django.db import DatabaseError, close_old_connections
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from django.views.decorators.http import require_safe
from ninja.constants import NOT_SET
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from pxtserve import conf
from pxtserve.auth import api_key_auth, check_auth
from pxtserve.errors import ApiError, error_response
from pxtserve.metrics_dir import ENV as MULTIPROC_ENV
from pxtserve.middleware import DualModeMiddleware
from pxtserve.pids import process_alive
from pxtserve.request_route import route_label

_logger = logging.getLogger(__name__)

# --- the metrics ------------------------------------------------------------------------------------------------

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# WRITE_BATCH_MAX is 64 by default
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _Metrics:
    """pxtserve's metrics, made on first use rather than at import: `serve` imports this module before it sets
    PROMETHEUS_MULTIPROC_DIR (pxtserve.metrics_dir), and prometheus-client makes a metric's values in memory or
    in files as the environment says when it is made."""

    def __init__(self) -> None:
        if os.environ.get(MULTIPROC_ENV) and values.ValueClass is values.MutexValue:
            values.ValueClass = values.get_value_class()  # prometheus-client's own choice, made again
        self.requests = Counter(
            "pxtserve_requests_total", "Requests answered, by declared route", ["route", "method", "status"]
        )
        self.request_duration = Histogram(
            "pxtserve_request_duration_seconds",
            "Time until the response was ready (a streamed file's transfer comes after)",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
        )
        # gauges add up over the live processes of a serve ("livesum"); a dead process's values are dropped
        self.in_flight = Gauge(
            "pxtserve_requests_in_flight", "Requests being served", ["route"], multiprocess_mode="livesum"
        )
        self.write_batch = Histogram(
            "pxtserve_write_batch_size",
            "Rows per Pixeltable call of a table's writer (group commit)",
            ["table", "kind"],
            buckets=_BATCH_BUCKETS,
        )
        self.write_queue = Gauge(
            "pxtserve_write_queue_depth",
            "Write requests waiting for their table's writer",
            ["table"],
            multiprocess_mode="livesum",
        )
        self.job_duration = Histogram(
            "pxtserve_job_duration_seconds", "Run time of finished background jobs", ["route"], buckets=_JOB_BUCKETS
        )
        self.pool_in_use = Gauge(
            "pxtserve_pixeltable_pool_in_use",
            "Threads of the Pixeltable call pool running a call",
            multiprocess_mode="livesum",
        )
        self.pool_size = Gauge(
            "pxtserve_pixeltable_pool_size", "Threads of the Pixeltable call pool", multiprocess_mode="livesum"
        )
        self.export_failures = Counter(
            "pxtserve_export_failures_total", "Rows an export_sql target did not take", ["target"]
        )


_made: _Metrics | None = None
_made_lock = threading.Lock()


def _metrics() -> _Metrics:
    made = _made
    if made is None:
        made = _make()
    return made


def _make() -> _Metrics:
    global _made
    with _made_lock:
        if _made is None:
            _made = _Metrics()
        return _made


# method labels a client cannot multiply (any other method is "other")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# the labelled children, by label values: a dict lookup is cheaper than prometheus-client's labels()
_children: dict[tuple[Any, ...], Any] = {}


def enabled() -> bool:
    return conf.settings().METRICS


def _child(metric: Any, *label_values: str) -> Any:
    key = (metric, *label_values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*label_values)
    return child


# --- what the rest of pxtserve reports -----------------------------------------------------------------------


def observe_write(table: str, kind: str, rows: int) -> None:
    """A table's writer makes one Pixeltable call carrying `rows` requests (pxtserve.writes)."""
    if enabled():
        _child(_metrics().write_batch, table, kind).observe(rows)


def set_write_queue(table: str, depth: int) -> None:
    """`depth` write requests wait for the table's writer (pxtserve.writes)."""
    if enabled():
        _child(_metrics().write_queue, table).set(depth)


def observe_job(route: str, started_at: datetime | None) -> None:
    """A job that started at `started_at` has finished (pxtserve.jobs.run, in the worker process)."""
    if enabled() and started_at is not None:
        _child(_metrics().job_duration, route).observe(max(0.0, (timezone.now() - started_at).total_seconds()))


def export_failed(target: str) -> None:
    """An export_sql target (its table name: never its URL, which may carry a password) refused a row."""
    if enabled():
        _child(_metrics().export_failures, target).inc()


class CountedPool(ThreadPoolExecutor):
    """The Pixeltable call pool (pxtserve.executor), counting its busy threads."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "") -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        if enabled():
            _metrics().pool_size.set(max_workers)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not enabled():
            return super().submit(fn, *args, **kwargs)
        return super().submit(_counted, fn, *args, **kwargs)


def _counted(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    gauge = _metrics().pool_in_use
    gauge.inc()
    try:
        return fn(*args, **kwargs)
    finally:
        gauge.dec()


# --- requests ---------------------------------------------------------------------------------------------------


class MetricsMiddleware(DualModeMiddleware):
    """Counts and times every request by its declared route; async in the API chain, sync in a WSGI site's."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        if not enabled():
            raise MiddlewareNotUsed  # Django leaves it out of the chain: metrics off cost nothing
        super().__init__(get_response)
        # Django calls process_view once the URL is resolved (the route is known then) and before the view:
        # there the request enters the in-flight gauge. A coroutine in the async chain, or a thread hop each.
        self.process_view = self._process_view_async if self.is_async else self._process_view

    def call(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            _leave(request)
        _record(request, response.status_code, started)
        return response

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        try:
            response = await self.get_response(request)
        except asyncio.CancelledError:
            _record(request, 499, started)  # the client went away before the answer (nginx's 499)
            raise
        finally:
            _leave(request)
        _record(request, response.status_code, started)
        return response

    def _process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> None:
        _enter(request)

    async def _process_view_async(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> None:
        _enter(request)


def _enter(request: HttpRequest) -> None:
    route = request.pxtserve_route = route_label(request)  # type: ignore[attr-defined]
    gauge = request.pxtserve_in_flight = _child(_metrics().in_flight, route)  # type: ignore[attr-defined]
    gauge.inc()


def _leave(request: HttpRequest) -> None:
    gauge = getattr(request, "pxtserve_in_flight", None)
    if gauge is not None:
        gauge.dec()
        request.pxtserve_in_flight = None  # type: ignore[attr-defined]


def _record(request: HttpRequest, status: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    route = getattr(request, "pxtserve_route", None) or route_label(request)
    method = request.method if request.method in _METHODS else "other"
    made = _metrics()
    _child(made.requests, route, method, str(status)).inc()
    _child(made.request_duration, route, method).observe(elapsed)


# --- the scrape -------------------------------------------------------------------------------------------------


class JobsCollector:
    """pxtserve_jobs{status}: the job table's rows by status, counted when scraped (every status, 0 included)."""

    def collect(self) -> Iterator[Metric]:
        from pxtserve.models import Job  # here: the model needs Django's apps loaded

        family = GaugeMetricFamily("pxtserve_jobs", "Background jobs by status", labels=["status"])
        # a scrape runs on a thread of its own, outside any request: its connection is tidied here
        close_old_connections()
        try:
            counts = dict(Job.objects.order_by().values_list("status").annotate(n=Count("pk")))
        except DatabaseError:
            _logger.warning("metrics: cannot count the jobs", exc_info=True)
            return
        finally:
            close_old_connections()
        for status in Job.Status.values:
            family.add_metric([status], counts.get(status, 0))
        yield family


class _Collected:
    """Another registry's metrics, as one collector of the scrape's registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        return self.source.collect()


def scrape_registry() -> CollectorRegistry:
    """Everything a scrape answers: every process's metrics (multiprocess mode) or this one's, and the jobs."""
    _metrics()  # made, so that a scrape before any request shows them too
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        forget_dead_processes(Path(directory))
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_Collected(REGISTRY))  # type: ignore[arg-type]
    registry.register(JobsCollector())  # type: ignore[arg-type]
    return registry


def forget_dead_processes(directory: Path) -> None:
    """Drop the gauges of processes that have ended (a web worker uvicorn replaced, a recycled job worker):
    prometheus-client keeps them until told, and a killed process tells no one."""
    for path in directory.glob("gauge_live*_*.db"):
        pid_text = path.stem.rpartition("_")[2]
        if pid_text.isdigit() and not process_alive(int(pid_text)):
            multiprocess.mark_process_dead(int(pid_text), str(directory))


def render(accept: str | None) -> tuple[bytes, str]:
    """The scrape's body and content type (OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(scrape_registry()), content_type


def _metrics_auth(service_auth: Any) -> Any:
    """The Ninja auth of /metrics under PXTSERVE["METRICS_AUTH"] (None or NOT_SET: anyone)."""
    setting = conf.settings().METRICS_AUTH
    if setting == "none":
        return None
    if setting == "service":
        return service_auth
    return api_key_auth(lambda: list(conf.settings().METRICS_AUTH))


def make_metrics_view(auth: Any = NOT_SET) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    """A Django view (GET, HEAD) answering the metrics in Prometheus' text format.

    `auth` is the Ninja auth that METRICS_AUTH = "service" (the default) applies: the service's for the
    served service (pxtserve.service), whatever a site passes (`auth=router.auth` to follow a router's);
    NOT_SET or None: anyone. A list of keys in METRICS_AUTH replaces it; "none" lets anyone in.
    """

    @require_safe
    async def metrics_view(request: HttpRequest) -> HttpResponse:
        if not enabled():
            return error_response(ApiError(404, "NOT_FOUND", f"no route serves {request.path} (metrics are off)"))
        denied = await check_auth(_metrics_auth(auth), request)
        if denied is not None:
            return denied
        # off the event loop: reading every process's files and counting the jobs take milliseconds
        body, content_type = await asyncio.to_thread(render, request.headers.get("Accept"))
        return HttpResponse(body, content_type=content_type)

    return metrics_view


# for a site's urls.py: `path("metrics", metrics_view)` (METRICS_AUTH decides who may read it)
metrics_view = make_metrics_view()
