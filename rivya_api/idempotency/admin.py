"""Read-only admin for idempotency records: staff can see a key's state, not forge it.

The stored body is never shown: it may hold a secret the API shows only once
(a webhook endpoint's ``whsec_…``), kept (encrypted) solely so a retry gets it back.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from rivya_api.idempotency import sealing
from rivya_api.idempotency.models import IdempotencyRecord


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ("key", "account", "request_method", "request_path", "state", "response_status", "created_at")
    list_filter = ("state",)
    search_fields = ("key", "request_path")
    ordering = ("-created_at",)
    fields = readonly_fields = (
        "account",
        "key",
        "request_method",
        "request_path",
        "fingerprint",
        "state",
        "locked_until",
        "response_status",
        "response_size",
        "created_at",
        "completed_at",
        "expires_at",
    )

    @admin.display(description="response size (bytes)")
    def response_size(self, obj: IdempotencyRecord) -> int | str:
        try:
            return len(sealing.unseal(obj.response_body or b""))  # stored encrypted; the size of what it holds
        except sealing.UnreadableResponseError:
            return "unreadable (SECRET_KEY changed)"

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False
