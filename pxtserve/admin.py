"""The job table in Django's admin: what an operator needs to see about background requests."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from pxtserve.models import IdempotencyKey, Job

if TYPE_CHECKING:
    from pxtserve.jobs.control import Report


def _pretty(value: Any) -> str:
    if value is None or value == {} or value == "":
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "route", "status", "submitted_at", "duration_display", "webhook_status", "request_id")
    list_filter = ("status", "route", "webhook_status")
    # a request id from a log line (or a client's X-Request-ID) finds the job it made
    search_fields = ("id", "request_id")
    date_hierarchy = "submitted_at"
    fieldsets = (
        (None, {"fields": ("id", "route", "status", "duration_display")}),
        ("Timing", {"fields": ("submitted_at", "started_at", "finished_at")}),
        ("Outcome", {"fields": ("result_display", "error", "error_detail_display", "traceback_display")}),
        ("Request", {"fields": ("request_id", "inputs_display", "uploads_display", "media_base_url", "retry_of")}),
        (
            "Webhook",
            {
                "fields": (
                    "webhook_url",
                    "webhook_status",
                    "webhook_attempts",
                    "webhook_error",
                    "webhook_delivered_at",
                )
            },
        ),
        ("Execution", {"fields": ("route_digest", "task_id", "worker"), "classes": ("collapse",)}),
    )
    readonly_fields = (
        "id",
        "route",
        "status",
        "duration_display",
        "submitted_at",
        "started_at",
        "finished_at",
        "result_display",
        "error",
        "error_detail_display",
        "traceback_display",
        "inputs_display",
        "uploads_display",
        "media_base_url",
        "retry_of",
        "request_id",
        "webhook_url",
        "webhook_status",
        "webhook_attempts",
        "webhook_error",
        "webhook_delivered_at",
        "route_digest",
        "task_id",
        "worker",
    )

    actions = ("cancel_selected", "retry_selected")

    # jobs are created by requests and changed by workers, and by the actions below: never edited
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_control_permission(self, request: HttpRequest) -> bool:
        """Who may cancel and retry jobs: holders of the model's change permission (which no form uses)."""
        return bool(request.user.has_perm("pxtserve.change_job"))

    def _report(self, request: HttpRequest, verb: str, report: Report) -> None:
        if report.done:
            self.message_user(request, f"{verb} {len(report.done)} job(s): {', '.join(report.done)}", messages.SUCCESS)
        if report.skipped:
            self.message_user(
                request, f"skipped {len(report.skipped)} job(s): {'; '.join(report.skipped)}", messages.WARNING
            )

    @admin.action(description="Cancel the selected pending jobs", permissions=["control"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        # imported here: every Django process loads this module (admin autodiscovery), the job cluster's
        # bookkeeping processes too, and control imports the Pixeltable side of jobs
        from pxtserve.jobs.control import cancel_jobs

        self._report(request, "cancelled", cancel_jobs(queryset))

    @admin.action(description="Retry the selected failed jobs (each as a new job)", permissions=["control"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        from pxtserve.jobs.control import retry_jobs

        self._report(request, "retried", retry_jobs(queryset))

    @admin.display(description="duration")
    def duration_display(self, job: Job) -> str:
        duration = job.duration
        if duration is None:
            return "-"
        return f"{duration.total_seconds():.3f} s" + ("" if job.finished_at else " (running)")

    @admin.display(description="result")
    def result_display(self, job: Job) -> str:
        return _pretty(job.result)

    @admin.display(description="error detail")
    def error_detail_display(self, job: Job) -> str:
        return _pretty(job.error_detail)

    @admin.display(description="traceback")
    def traceback_display(self, job: Job) -> str:
        return _pretty(job.traceback)

    @admin.display(description="inputs")
    def inputs_display(self, job: Job) -> str:
        return _pretty(job.inputs)

    @admin.display(description="uploads")
    def uploads_display(self, job: Job) -> str:
        return _pretty(job.uploads)


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    """The Idempotency-Keys writing routes remember (pxtserve.idempotency), read-only: deleting one lets its
    request run again."""

    list_display = ("key", "route", "status", "response_status", "created_at", "owner")
    list_filter = ("status", "route")
    search_fields = ("key",)
    readonly_fields = ("route", "key", "fingerprint", "status", "token", "owner", "created_at", "finished_at",
                       "response_status", "response_headers")  # fmt: skip
    exclude = ("response_body",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: IdempotencyKey | None = None) -> bool:
        return False
