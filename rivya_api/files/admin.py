"""Django admin for files: read-only records, with a delete action that goes through the service."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages

from rivya_api.files.models import File
from rivya_api.files.services import file_delete


@admin.register(File)
class FileAdmin(admin.ModelAdmin):
    list_display = ("public_id", "account", "purpose", "content_type", "size", "created_at", "expires_at", "deleted_at")
    list_filter = ("purpose", "kind", "content_type")
    search_fields = ("public_id", "filename", "sha256")
    date_hierarchy = "created_at"
    actions = ["delete_bytes"]
    readonly_fields = [field.name for field in File._meta.fields]

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        # Rows stay (ids keep resolving); the action below removes the bytes.
        return False

    @admin.action(description="Delete the selected files' bytes (records stay)")
    def delete_bytes(self, request: Any, queryset: Any) -> None:
        count = 0
        for file in queryset.filter(deleted_at__isnull=True):
            file_delete(file=file)
            count += 1
        self.message_user(request, f"Deleted {count} files.", messages.SUCCESS)
