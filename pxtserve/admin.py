"""The job table in Django's admin: what an operator needs to see about background requests."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from pxtserve.models import Job


def _pretty(value: Any) -> str:
    if value is None or value == {} or value == "":
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "route", "status", "submitted_at", "duration_display", "request_id")
    list_filter = ("status", "route")
    # a request id from a log line (or a client's X-Request-ID) finds the job it made
    search_fields = ("id", "request_id")
    date_hierarchy = "submitted_at"
    fieldsets = (
        (None, {"fields": ("id", "route", "status", "duration_display")}),
        ("Timing", {"fields": ("submitted_at", "started_at", "finished_at")}),
        ("Outcome", {"fields": ("result_display", "error", "error_detail_display", "traceback_display")}),
        ("Request", {"fields": ("request_id", "inputs_display", "uploads_display", "media_base_url")}),
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
        "request_id",
        "route_digest",
        "task_id",
        "worker",
    )

    # jobs are created by requests and changed by workers only
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

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
