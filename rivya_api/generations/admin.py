"""Django admin for generation tasks: searchable by public id, read-only, cancel through the service.

A task's state, money and outputs change only together with its ledger
operation and webhook event (``rivya_api.generations.services``), so nothing
here edits a task; the one action cancels through ``generation_cancel``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from rivya_api.generations.exceptions import GenerationError
from rivya_api.generations.models import GenerationTask
from rivya_api.generations.services import generation_cancel


@admin.register(GenerationTask)
class GenerationTaskAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "account",
        "model",
        "kind",
        "status",
        "source",
        "price",
        "charged",
        "released",
        "created_at",
    ]
    list_filter = ["status", "kind", "source", "model"]
    list_select_related = ["account"]
    search_fields = ["=public_id", "submitted_by", "model"]
    ordering = ["-created_at", "-pk"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    # The "refunded" column holds what was released; the page says so.
    readonly_fields = [
        "released" if field.name == "refunded" else field.name for field in GenerationTask._meta.fields
    ] + ["outputs"]
    actions = ["cancel_tasks"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the ledger and webhook events refer to the task

    @admin.display(description="released", ordering="refunded")
    def released(self, obj: GenerationTask) -> int:
        return obj.released

    @admin.action(description="Cancel the selected tasks (credits are released)", permissions=["view"])
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[GenerationTask]) -> None:
        canceled = 0
        for task in queryset.select_related("account"):
            try:
                generation_cancel(account=task.account, task_id=task.public_id)
            except GenerationError as exc:
                self.message_user(request, f"{task.public_id}: {exc}", messages.WARNING)
            else:
                canceled += 1
        self.message_user(request, f"Asked {canceled} task(s) to stop.", messages.SUCCESS)
