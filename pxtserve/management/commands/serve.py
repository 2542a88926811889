"""`manage.py serve`: serve a declared service (or a single endpoint given by flags) under uvicorn."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
from argparse import ArgumentParser
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, get_args

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from pxtserve import conf, metrics_dir, startup, tracing
from pxtserve.conf import JobRunner
from pxtserve.config import ServiceConfig, load_service, parse_service
from pxtserve.errors import ServiceConfigError
from pxtserve.jobs.in_process import InProcessJobs, job_worker_count, runs_in_process
from pxtserve.logs import FORMATS as LOG_FORMATS
from pxtserve.logs import LEVELS as LOG_LEVELS
from pxtserve.logs import configure_serve, uvicorn_options
from pxtserve.route_flags import add_route_flags, given_flags, raw_route
from pxtserve.routes.kinds import ROUTE_KINDS


class Command(BaseCommand):
    help = (
        "Serve a Pixeltable service: `serve NAME [--config FILE]` for a declared service, or "
        "`serve insert|update|delete|query|compute --path /x ...` for a single endpoint."
    )
    # the URLconf is the service being started: system checks would build it before we choose it
    # (handle runs the checks that do not, _run_checks)
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("target", help=f"service name, or one of {'/'.join(ROUTE_KINDS)} for one endpoint")
        parser.add_argument("--config", help="service file (TOML or pyproject.toml); default ./pyproject.toml")
        parser.add_argument("--host", help="bind address (default: the service's, 0.0.0.0)")
        parser.add_argument("--port", type=int, help="bind port (default: the service's, 8000)")
        parser.add_argument("--prefix", help="URL prefix of every route, e.g. /api")
        parser.add_argument("--title", help="OpenAPI title (single-endpoint mode)")
        parser.add_argument("--modules", nargs="+", help="modules to import first (single-endpoint mode)")
        parser.add_argument("--dry-run", action="store_true", help="validate and print the service; bind no port")
        parser.add_argument("--json", action="store_true", help="with --dry-run: print JSON")
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            metavar="N",
            help="web server processes (uvicorn workers); each initializes Pixeltable after it starts",
        )
        parser.add_argument(
            "--no-workers",
            action="store_true",
            help="start no background-job workers (run `manage.py qcluster` for them elsewhere)",
        )
        parser.add_argument(
            "--job-runner",
            choices=get_args(JobRunner),
            help=(
                "where background jobs run: threads of the web process (in-process), a django-q2 cluster beside it "
                "(cluster: a process per job worker), or auto, in-process with one web process (default: "
                "PXTSERVE_JOB_RUNNER, else settings.PXTSERVE['JOB_RUNNER'], else auto)"
            ),
        )
        parser.add_argument(
            "--no-access-log",
            action="store_true",
            help="log no line per request (pxtserve.access, which uvicorn's access log is replaced by)",
        )
        parser.add_argument(
            "--log-level",
            choices=LOG_LEVELS,
            help="log level of every process of this serve (default: PXTSERVE_LOG_LEVEL, else info)",
        )
        parser.add_argument(
            "--log-format",
            choices=LOG_FORMATS,
            help="text lines, or one JSON object per line (default: PXTSERVE_LOG_FORMAT, else text)",
        )
        parser.add_argument(
            "--otel",
            action="store_true",
            help="emit OpenTelemetry traces, exported as the OTEL_* variables say (needs pxtserve[otel])",
        )
        parser.add_argument(
            "--mcp",
            action="store_true",
            help="also serve the routes as MCP tools at <prefix>/mcp (needs pxtserve[mcp])",
        )
        add_route_flags(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["dry_run"]:
            # before anything imports prometheus-client: every process of this serve keeps its metrics there
            metrics_dir.prepare()
        from pxtserve.service import activate, build_service

        # before anything logs, and before Pixeltable starts (pxtserve.logs.configure_serve says why)
        configure_serve(options["log_level"], options["log_format"], access_log=not options["no_access_log"])
        self._run_checks()
        # --otel (or PXTSERVE_OTEL / settings.PXTSERVE["OTEL"]): for every process it starts; checked before anything
        if (problem := tracing.configure_serve(options["otel"])) is not None:
            raise CommandError(problem)
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        job_runner = options["job_runner"] or conf.settings().JOB_RUNNER
        try:
            jobs_in_process = runs_in_process(job_runner, options["workers"])
        except ValueError as exc:
            raise CommandError(f"--job-runner: {exc}") from None
        try:
            # Pixeltable reports progress on stdout; keep stdout for our own output (--json must parse)
            with _stdout_to_stderr():
                config = self._service_config(options)
                built = build_service(config) if options["dry_run"] else activate(config)
        except ServiceConfigError as exc:
            raise CommandError(str(exc)) from None
        if options["dry_run"]:
            description = built.describe()
            self.stdout.write(json.dumps(description, indent=2) if options["json"] else _as_text(description))
            return
        self._run(
            config,
            workers=not options["no_workers"],
            processes=options["workers"],
            jobs_in_process=jobs_in_process,
        )

    def _run_checks(self) -> None:
        """The system checks serve can run (pxtserve.checks.serve_issues), before anything is built:
        warnings are printed, errors stop serve."""
        from django.core.checks import ERROR, WARNING

        from pxtserve.checks import issue_text, serve_issues

        issues = serve_issues()
        for issue in issues:
            if issue.level == WARNING:
                self.stderr.write(self.style.WARNING(f"WARNING: {issue_text(issue)}"))
        errors = [issue_text(issue) for issue in issues if issue.level >= ERROR]
        if errors:
            raise CommandError("\n".join(errors))

    def _service_config(self, options: dict[str, Any]) -> ServiceConfig:
        target = options["target"]
        if target in ROUTE_KINDS:
            raw: dict[str, Any] = {"name": target, "routes": [raw_route(target, options)]}
            if options["modules"]:
                raw["modules"] = options["modules"]
            if options["title"]:
                raw["title"] = options["title"]
            config = parse_service(raw, "command line")
        else:
            given = given_flags(options)
            if given:
                flags = ", ".join(flag.option for flag in given)
                raise ServiceConfigError(
                    f"{flags}: single-endpoint flags need a route type ({', '.join(ROUTE_KINDS)}) "
                    f"instead of the service name {target!r}"
                )
            config = load_service(options["config"] or Path.cwd() / "pyproject.toml", target)
        overrides = {k: options[k] for k in ("host", "port", "prefix") if options[k] is not None}
        if options["mcp"]:
            overrides["mcp"] = True
        if overrides:
            config = parse_service({**config.model_dump(), **overrides}, config.source or "command line")
        return config

    def _run(
        self, config: ServiceConfig, *, workers: bool = True, processes: int = 1, jobs_in_process: bool = True
    ) -> None:
        import uvicorn

        from pxtserve.asgi import build_application
        from pxtserve.jobs.recovery import start_up
        from pxtserve.server import uvicorn_options as server_options
        from pxtserve.workers import STOP_TIMEOUT_S, WorkerProcess

        data_directory = _data_directory()
        if data_directory:
            self.stdout.write(data_directory)
        # the embedded default: Django's SQLite database is created/migrated here, so nothing runs before serve
        call_command("migrate", interactive=False, verbosity=0)
        # jobs an earlier run accepted but did not finish: requeued, or failed as interrupted
        jobs = start_up()
        if any(jobs.values()):
            self.stdout.write(
                f"Jobs: {jobs['requeued']} requeued, {jobs['interrupted']} interrupted, {jobs['pruned']} pruned"
            )
        _exit_on_sigterm()
        shown_host = "localhost" if config.host in ("0.0.0.0", "::", "") else config.host
        base = f"http://{shown_host}:{config.port}{config.prefix}"
        self.stdout.write(f"Serving {config.name!r} at {base}/  (docs: {base}/docs)")
        self.stdout.flush()
        worker_process = None
        job_threads = None
        try:
            if workers and not jobs_in_process:
                worker_process = WorkerProcess.start()
            if processes == 1:
                app: Any = build_application()
                if workers and jobs_in_process:
                    # after the build: a job runs a route of the service the web process serves
                    job_threads = InProcessJobs.start(job_worker_count())
            else:
                # uvicorn spawns the processes and imports the app in each; they build the same
                # service from PXTSERVE_SERVICE_JSON (set by activate) and start Pixeltable themselves
                app = "pxtserve.asgi:application"
            # built: collect garbage again (pxtserve.startup; manage.py and the console script paused it)
            startup.resume()
            uvicorn.run(
                app,
                host=config.host,
                port=config.port,
                lifespan="off",
                workers=processes,
                # protocol, loop and connection limits (pxtserve.server)
                **server_options(),
                # the line per request is pxtserve.access's (it carries the request id); uvicorn logs with
                # pxtserve's config (pxtserve.logs), which configure_serve applied
                access_log=False,
                **uvicorn_options(),
            )
        finally:
            if job_threads is not None:
                job_threads.stop(STOP_TIMEOUT_S)
            if worker_process is not None:
                worker_process.stop()
            _shutdown()


def _data_directory() -> str | None:
    """Where the standalone site keeps its own files (its settings' VAR_DIR, which depends on where it runs:
    pxtserve/site/settings.py), said at start; None for a site of your own, which keeps them its own way."""
    from django.conf import settings

    var_dir = getattr(settings, "VAR_DIR", None)
    if var_dir is None:
        return None
    database = settings.DATABASES.get("default", {})
    in_it = "static files"
    if database.get("ENGINE") == "django.db.backends.sqlite3" and Path(database.get("NAME", "")).parent == var_dir:
        in_it = "Django's database and static files"
    return f"Data directory: {var_dir} ({in_it}; PXTSERVE_VAR_DIR moves it)"


def _exit_on_sigterm() -> None:
    """Make SIGTERM unwind the stack (uvicorn re-raises it after its graceful shutdown), so the workers get stopped."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send whatever is written to stdout (file descriptor 1) to stderr for a while.

    Pixeltable's console logger holds the stdout stream it saw at import, so
    redirecting sys.stdout alone is not enough; this works at the fd level.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _shutdown() -> None:
    from pxtserve.executor import shutdown_pool
    from pxtserve.export import dispose_engines
    from pxtserve.pxt_internals import stop_embedded_database_unless_used

    shutdown_pool()
    dispose_engines()
    # the last process of this serve's tree (its web and job workers have ended): unless another process (another
    # serve on the same Pixeltable home, a notebook) uses the embedded database, stop it as this process exits;
    # not now, since a process that called serve in-process may go on using Pixeltable
    atexit.register(stop_embedded_database_unless_used)


def _as_text(description: dict[str, Any]) -> str:
    lines = [
        f"service {description['name']!r} ({description['title']}) from {description['source']}",
        (
            f"  listens on {description['host']}:{description['port']}, prefix {description['prefix'] or '/'!r}, "
            f"docs at {description['docs']}"
        ),
    ]
    for route in description["routes"]:
        extra = {k: v for k, v in route.items() if k not in ("type", "method", "path") and v not in (None, False, [])}
        lines.append(f"  {route['method']:<5} {route['path']:<28} {route['type']:<7} " + json.dumps(extra))
    return "\n".join(lines) + "\n"
