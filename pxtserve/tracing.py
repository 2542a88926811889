"""OpenTelemetry traces (`serve --otel`, PXTSERVE["OTEL"], PXTSERVE_OTEL=1).

One span per API request (TracingMiddleware, in PXTSERVE["API_MIDDLEWARE"]), continuing
an incoming W3C `traceparent`; under it a span for the Pixeltable call on the pool
(pxtserve.executor), for the time a write waits for its table's batch (pxtserve.writes)
and for each export_sql row (pxtserve.export). A background job's row carries the
submitting request's trace context (pxtserve.jobs.submit) and the worker runs the job
under a span continuing it (pxtserve.jobs.run).

The SDK is optional (`pip install pxtserve[otel]`): nothing here imports opentelemetry
until tracing is set up, and the hooks test the module-level `enabled` flag first, so
with tracing off they cost one attribute read. Exporters come from the standard
OTEL_* variables (OTEL_TRACES_EXPORTER: otlp, the default, over HTTP/protobuf; console;
none; the OTEL_EXPORTER_OTLP_* endpoint, headers and timeout, OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_PROPAGATORS as the SDK reads them);
PXTSERVE_OTEL_TEST_FILE adds an exporter that appends each finished span to a file as a
JSON line, which processes can share (the tests read it).

Each process sets tracing up for itself: a web process as its API handler loads its
middleware (uvicorn's --workers spawn fresh interpreters), a job worker (forked by
django-q2) as it runs its first job.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.util
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed

from pxtserve import conf
from pxtserve.errors import ApiError
from pxtserve.middleware import DualModeMiddleware
from pxtserve.request_route import UNMATCHED, route_label

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.trace import Span, Tracer

    from pxtserve.models import Job

T = TypeVar("T")

NOT_INSTALLED = "tracing needs the OpenTelemetry SDK, which is not installed: pip install pxtserve[otel]"
_EXPORTERS = ("otlp", "console", "none")

# the hooks' whole cost when tracing is off
enabled = False
_tracer: Tracer | None = None
_provider: TracerProvider | None = None
# the process tracing was set up in: a forked child sets up its own
_pid: int | None = None
_lock = threading.Lock()


def wanted() -> bool:
    """Whether the settings ask for traces: PXTSERVE["OTEL"] or PXTSERVE_OTEL=1 (what `serve --otel` sets)."""
    return conf.otel_enabled()


def problem() -> str | None:
    """What keeps tracing from starting (no SDK, an OTEL_TRACES_EXPORTER we cannot honour), or None."""
    try:
        import opentelemetry.sdk.trace

        if "otlp" in _exporter_names():
            import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:
        return NOT_INSTALLED
    for name in _exporter_names():
        if name not in _EXPORTERS:
            return f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (pxtserve knows {', '.join(_EXPORTERS)})"
    if "otlp" in _exporter_names() and _otlp_protocol() != "http/protobuf":
        return (
            f"OTEL_EXPORTER_OTLP_PROTOCOL {_otlp_protocol()!r}: pxtserve exports OTLP over http/protobuf only "
            "(run a collector that accepts it, or set OTEL_TRACES_EXPORTER=console)"
        )
    return None


def configure_serve(otel_flag: bool) -> str | None:
    """`serve --otel`: turn tracing on for this process and the ones it starts; what keeps it from starting, if any."""
    if otel_flag:
        conf.enable_otel_env()
    return problem() if wanted() else None


def setup() -> bool:
    """Set tracing up in this process when the settings ask for it (once per process); whether it is on."""
    global enabled, _tracer, _provider, _pid
    pid = os.getpid()
    if _pid == pid:
        return enabled
    with _lock:
        if _pid != pid:
            on = wanted()
            if on:
                found = problem()
                if found is not None:
                    raise ImproperlyConfigured(found)
                _provider = _build_provider()
                _tracer = _provider.get_tracer("pxtserve")
            enabled = on
            _pid = pid
    return enabled


# --- the provider and its exporters -----------------------------------------------------------------------------


def _exporter_names() -> list[str]:
    # the SDK's own variables, read where the SDK would read them (its exporters read the rest themselves)
    raw = os.environ.get("OTEL_TRACES_EXPORTER") or "otlp"
    return [name.strip().lower() for name in raw.split(",") if name.strip()]


def _otlp_protocol() -> str:
    return (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip() or "http/protobuf"


def _service_name() -> str:
    """The served service's name: from `serve` (PXTSERVE_SERVICE_JSON) or settings.PXTSERVE["SERVICE"]."""
    raw = conf.service_json_from_env()
    if raw:
        try:
            name = json.loads(raw).get("name")
        except (ValueError, AttributeError):
            name = None
        if isinstance(name, str) and name:
            return name
    return conf.settings().SERVICE or "pxtserve"


def _build_provider() -> TracerProvider:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    resource = Resource.create({"process.pid": os.getpid()})
    # OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) wins; else the service's name
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": _service_name()}))
    provider = TracerProvider(resource=resource)
    for name in _exporter_names():
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    test_file = conf.otel_test_file()
    if test_file:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(test_file)))  # type: ignore[arg-type]
    # the global provider too, so other instrumentation nests under these spans; it can be set once per process
    # (a forked child keeps its parent's, which still exports: the SDK restarts its threads after a fork)
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    _flush_at_exit(provider)
    return provider


def _flush_at_exit(provider: TracerProvider) -> None:
    """Export the spans still queued when the process ends, also where the SDK's atexit flush never runs:
    a forked job worker ends in os._exit, past atexit, so it flushes as multiprocessing exits. (A web
    process of `serve --workers N` exits through atexit: pxtserve.server.event_loop.)"""
    if multiprocessing.parent_process() is not None:
        multiprocessing.util.Finalize(provider, provider.shutdown, exitpriority=10)


class JsonLinesSpanExporter:
    """Appends each finished span to a file as one JSON line; one write per batch, so processes can share the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        data = "".join(json.dumps(_span_dict(span), default=str) + "\n" for span in spans).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _span_dict(span: ReadableSpan) -> dict[str, Any]:
    context, parent = span.get_span_context(), span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}" if context else None,
        "span_id": f"{context.span_id:016x}" if context else None,
        "parent_id": f"{parent.span_id:016x}" if parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "status_description": span.status.description,
        "service_name": span.resource.attributes.get("service.name"),
        "pid": os.getpid(),
    }


# --- spans ------------------------------------------------------------------------------------------------------


@contextmanager
def _span(name: str, attributes: dict[str, Any], kind: str = "INTERNAL", parent: Any = None) -> Iterator[Span]:
    """A span, current for the block; an exception is recorded on it, and is an error unless it answers a 4xx."""
    from opentelemetry.trace import SpanKind, Status, StatusCode

    assert _tracer is not None
    with _tracer.start_as_current_span(
        name,
        context=parent,
        kind=SpanKind[kind],
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span.record_exception(exc)
            if not _client_error(exc):
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise


def _client_error(exc: BaseException) -> bool:
    """Whether `exc` answers the client with a 4xx (no such row, a constraint violated): the request's fault."""
    status = exc.status if isinstance(exc, ApiError) else getattr(exc, "http_status", None)  # pxt.Error's
    return isinstance(status, int) and 400 <= status < 500


class TracingMiddleware(DualModeMiddleware):
    """A server span per request, named "METHOD /declared/route"; in the API chain, inside RequestIdMiddleware.

    With tracing off it takes itself out of the chain (MiddlewareNotUsed), so it costs nothing.
    """

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        if not setup():
            raise MiddlewareNotUsed("tracing is off")
        super().__init__(get_response)

    def call(self, request: HttpRequest) -> HttpResponseBase:
        with _request_span(request) as span:
            return _finish_request(span, request, self.get_response(request))

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        with _request_span(request) as span:
            return _finish_request(span, request, await self.get_response(request))


def _request_span(request: HttpRequest) -> Any:
    from opentelemetry import propagate

    method = request.method or "GET"
    attributes: dict[str, Any] = {"http.request.method": method, "url.path": request.path, "url.scheme": request.scheme}
    request_id = getattr(request, "request_id", None)  # set by RequestIdMiddleware, outside this one
    if request_id:
        attributes["pxtserve.request_id"] = request_id
    # the client's trace, when it sent a traceparent (the propagators of OTEL_PROPAGATORS, W3C by default)
    return _span(method, attributes, "SERVER", propagate.extract(request.headers))


def _finish_request(span: Span, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    from opentelemetry.trace import Status, StatusCode

    status = response.status_code
    span.set_attribute("http.response.status_code", status)
    route = route_label(request)  # known only now: the URL was resolved inside the chain
    if route != UNMATCHED:
        span.set_attribute("http.route", route)
        span.update_name(f"{request.method} {route}")
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
    return response


def pool_call(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn` run under a "pixeltable" span; called in the pool thread, in the request's context, so under its span."""
    attributes = {"code.function.name": getattr(fn, "__qualname__", None) or repr(fn)}

    def traced(*args: Any, **kwargs: Any) -> T:
        with _span("pixeltable", attributes):
            return fn(*args, **kwargs)

    return traced


def wait_for_write(request: Any, table: str) -> Any:
    """A write request's wait for its table's writer (pxtserve.writes), under a span that says its batch's size."""
    with _span("pxtserve.write.wait", {"pxtserve.write.table": table, "pxtserve.write.kind": request.kind}) as span:
        try:
            return request.outcome()
        finally:
            # the Pixeltable call that wrote it carried this many rows (1 when its batch was retried row by row)
            span.set_attribute("pxtserve.write.batch_size", request.batch_size)


def export_span(dialect: str, target: str, method: str) -> Any:
    """One export_sql row written to its target (the URL is not recorded: it may hold a password)."""
    attributes = {"db.system.name": dialect, "db.collection.name": target, "db.operation.name": method}
    return _span("pxtserve.export", attributes, "CLIENT")


def context_carrier() -> dict[str, str]:
    """The current trace context as W3C headers, for a job's row ({} when tracing is off)."""
    if not enabled:
        return {}
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def run_job(job: Job, run: Callable[[Job], str]) -> str:
    """`run(job)` under a span continuing the trace of the request that submitted it; its outcome."""
    if not setup():
        return run(job)
    from opentelemetry import propagate
    from opentelemetry.trace import Status, StatusCode

    attributes = {"pxtserve.job.id": job.id, "pxtserve.job.route": job.route}
    if job.request_id:
        attributes["pxtserve.request_id"] = job.request_id
    with _span(f"job {job.route}", attributes, "CONSUMER", propagate.extract(job.trace_context or {})) as span:
        outcome = run(job)
        span.set_attribute("pxtserve.job.status", outcome)
        if outcome == "error":
            span.set_status(Status(StatusCode.ERROR, "the job failed"))
        return outcome
