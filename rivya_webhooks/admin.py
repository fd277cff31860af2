"""Django admin of rivya_webhooks: endpoints, events, deliveries and attempts, with redeliver actions.

Everything here is read-only except through actions, and actions call services:
the admin never writes rows the services own. Secrets are never shown.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from rivya_webhooks.exceptions import RivyaWebhooksError
from rivya_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint, WebhookEvent
from rivya_webhooks.services import webhook_endpoint_update, webhook_event_redeliver


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "account", "url", "enabled", "disabled_reason", "failing_since", "created_at")
    list_filter = ("enabled", "disabled_reason")
    search_fields = ("public_id", "url", "description")
    readonly_fields = (
        "public_id",
        "account",
        "url",
        "description",
        "event_types",
        "enabled",
        "disabled_reason",
        "disabled_at",
        "previous_secret_expires_at",
        "failing_since",
        "created_at",
        "updated_at",
    )
    exclude = ("secret_encrypted", "previous_secret_encrypted")
    actions = ("enable_endpoints", "disable_endpoints")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return True

    @admin.action(description="Enable (resume pending deliveries)", permissions=["view"])
    def enable_endpoints(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            webhook_endpoint_update(endpoint=endpoint, enabled=True)
        self.message_user(request, f"Enabled {queryset.count()} endpoint(s).", messages.SUCCESS)

    @admin.action(description="Disable (pause deliveries)", permissions=["view"])
    def disable_endpoints(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            webhook_endpoint_update(endpoint=endpoint, enabled=False)
        self.message_user(request, f"Disabled {queryset.count()} endpoint(s).", messages.SUCCESS)


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    fields = ("public_id", "endpoint", "state", "attempts_count", "next_attempt_at", "last_status_code", "last_error")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _redeliver(modeladmin: admin.ModelAdmin, request: HttpRequest, events: list[WebhookEvent]) -> None:
    sent = skipped = 0
    for event in events:
        try:
            sent += len(webhook_event_redeliver(event=event))
        except RivyaWebhooksError:
            skipped += 1
    modeladmin.message_user(request, f"Redelivery queued for {sent} delivery(ies).", messages.SUCCESS)
    if skipped:
        modeladmin.message_user(request, f"{skipped} event(s) have no enabled endpoint.", messages.WARNING)


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "account", "type", "created_at")
    list_filter = ("type",)
    search_fields = ("public_id", "type")
    date_hierarchy = "created_at"
    readonly_fields = ("public_id", "account", "type", "payload", "created_at")
    exclude = ("data",)
    inlines = (WebhookDeliveryInline,)
    actions = ("redeliver",)

    @admin.action(description="Redeliver now to every enabled endpoint", permissions=["view"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        _redeliver(self, request, list(queryset))


class WebhookDeliveryAttemptInline(admin.TabularInline):
    model = WebhookDeliveryAttempt
    fields = ("created_at", "trigger", "status_code", "error", "latency_ms", "location", "next_attempt_at", "task_id")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("created_at",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "event", "endpoint", "state", "attempts_count", "next_attempt_at", "last_status_code")
    list_filter = ("state", "last_error")
    search_fields = ("public_id", "event__public_id", "endpoint__public_id")
    list_select_related = ("event", "endpoint")
    readonly_fields = (
        "public_id",
        "event",
        "endpoint",
        "state",
        "retry_count",
        "attempts_count",
        "next_attempt_at",
        "next_trigger",
        "dispatched_for",
        "last_attempt_at",
        "last_status_code",
        "last_error",
        "succeeded_at",
        "created_at",
    )
    exclude = ("claim_token",)
    inlines = (WebhookDeliveryAttemptInline,)
    actions = ("redeliver",)

    @admin.action(description="Redeliver now", permissions=["view"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        sent = skipped = 0
        for delivery in queryset.select_related("event", "endpoint"):
            try:
                webhook_event_redeliver(event=delivery.event, endpoint=delivery.endpoint)
                sent += 1
            except RivyaWebhooksError:
                skipped += 1
        self.message_user(request, f"Redelivery queued for {sent} delivery(ies).", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} skipped: their endpoint is disabled.", messages.WARNING)


@admin.register(WebhookDeliveryAttempt)
class WebhookDeliveryAttemptAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "delivery", "created_at", "trigger", "status_code", "error", "latency_ms")
    list_filter = ("trigger", "error")
    search_fields = ("public_id", "delivery__public_id", "delivery__event__public_id")
    list_select_related = ("delivery",)
    readonly_fields = (
        "public_id",
        "delivery",
        "trigger",
        "url",
        "status_code",
        "error",
        "error_message",
        "latency_ms",
        "response_body",
        "response_truncated",
        "location",
        "next_attempt_at",
        "task_id",
        "created_at",
    )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
