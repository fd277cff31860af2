"""Django admin for chat sessions: read-only, for support and reconciliation."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from rivya_api.chat.models import ChatMessage, ChatSession


class ChatMessageInline(admin.TabularInline):
    model = ChatMessage
    fields = (
        "public_id",
        "role",
        "status",
        "content",
        "attachments",
        "finish_reason",
        "prompt_tokens",
        "completion_tokens",
        "credits_reserved",
        "credits_charged",
        "created_at",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("created_at", "pk")

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = ("public_id", "account", "model", "title", "message_count", "credits_spent", "created_at")
    list_filter = ("model", "source")
    search_fields = ("public_id", "title")
    readonly_fields = (
        "public_id",
        "account",
        "model",
        "title",
        "source",
        "message_count",
        "credits_spent",
        "created_at",
        "updated_at",
    )
    inlines = [ChatMessageInline]

    def has_add_permission(self, request: Any) -> bool:
        return False
