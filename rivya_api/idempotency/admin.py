"""Read-only admin for idempotency records: staff can see what a key replays, not forge it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from rivya_api.idempotency.models import IdempotencyRecord


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ("key", "account", "request_method", "request_path", "state", "response_status", "created_at")
    list_filter = ("state",)
    search_fields = ("key", "request_path")
    ordering = ("-created_at",)
    readonly_fields = [field.name for field in IdempotencyRecord._meta.fields]

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False
