"""Serializers of the webhooks resource: input validation and the public shapes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from rivya_api.common.fields import ChoiceField
from rivya_api.common.schema import constant_field
from rivya_api.common.serializers import StrictSerializer
from rivya_webhooks.selectors import DELIVERY_STATE_FILTERS


class WebhookEndpointCreateInputSerializer(StrictSerializer):
    url = serializers.CharField(
        max_length=2048, help_text="Where events are POSTed: an https URL (a development server also takes http)."
    )
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=100),
        allow_empty=False,
        max_length=100,
        help_text=(
            "The event types to receive: `generation.succeeded`, `generation.failed`, `generation.canceled`, "
            "`credits.low`, `key.credit_limit_reached`, `webhook_endpoint.disabled` (`webhook.test` is always "
            'sent by the test action). `["*"]` (alone) subscribes to every type, including types added later.'
        ),
    )
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class WebhookEndpointUpdateInputSerializer(StrictSerializer):
    url = serializers.CharField(max_length=2048, required=False)
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=100),
        allow_empty=False,
        max_length=100,
        required=False,
        help_text='Replaces the list; the same types as on creation, or `["*"]` for every type.',
    )
    enabled = serializers.BooleanField(required=False, help_text="`true` also resumes paused deliveries.")
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)


class WebhookRedeliverInputSerializer(StrictSerializer):
    endpoint_id = serializers.CharField(
        max_length=40, required=False, help_text="Resend to this endpoint only (default: every enabled endpoint)."
    )


class WebhookEventFilterSerializer(serializers.Serializer):
    type = serializers.CharField(required=False, max_length=100)
    created_gte = serializers.DateTimeField(required=False)
    created_lt = serializers.DateTimeField(required=False)
    delivery_state = ChoiceField(choices=DELIVERY_STATE_FILTERS, required=False)


class WebhookEndpointOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id", help_text="`we_…`")
    object = constant_field("webhook_endpoint")
    url = serializers.CharField()
    description = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    enabled = serializers.BooleanField()
    disabled_reason = serializers.SerializerMethodField(
        help_text="`manual`, `gone` (answered 410) or `failing` (5 days of failures); null when enabled."
    )
    disabled_at = serializers.DateTimeField(allow_null=True)
    failing_since = serializers.DateTimeField(
        allow_null=True, help_text="First failure since the last success; the endpoint is disabled after 5 days."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_disabled_reason(self, obj: Any) -> str | None:
        return obj.disabled_reason or None


class WebhookEndpointWithSecretOutputSerializer(WebhookEndpointOutputSerializer):
    secret = serializers.SerializerMethodField(
        help_text="`whsec_…`: the signing secret. Shown only in this response; store it now."
    )

    def get_secret(self, obj: Any) -> str:
        return self.context["secret"]


class WebhookEndpointDeletedOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = constant_field("webhook_endpoint")
    deleted = serializers.BooleanField()


class WebhookAttemptOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    object = constant_field("webhook_delivery_attempt")
    created_at = serializers.DateTimeField(help_text="When the request was sent.")
    trigger = serializers.ChoiceField(choices=["scheduled", "manual"])
    url = serializers.CharField()
    status_code = serializers.IntegerField(help_text="The HTTP status, or 0 when no response came back.")
    error = serializers.SerializerMethodField(
        help_text="`http_status`, `redirect`, `timeout`, `connect`, `tls`, `dns`, `blocked_destination`, "
        "`invalid_url`, `network`; null on success."
    )
    error_message = serializers.CharField()
    latency_ms = serializers.IntegerField()
    response_body = serializers.CharField(help_text="The response body, at most 20 KB.")
    response_truncated = serializers.BooleanField()
    location = serializers.SerializerMethodField(help_text="A 3xx's Location (redirects are not followed).")
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="The retry this failure scheduled.")

    def get_error(self, obj: Any) -> str | None:
        return obj.error or None

    def get_location(self, obj: Any) -> str | None:
        return obj.location or None


class WebhookDeliveryOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    object = constant_field("webhook_delivery")
    endpoint_id = serializers.CharField(source="endpoint.public_id")
    url = serializers.CharField(source="endpoint.url")
    state = serializers.ChoiceField(
        choices=["pending", "succeeded", "failed"],
        help_text="`pending` (being retried, or paused while its endpoint is disabled), `succeeded`, "
        "or `failed` (retries used up).",
    )
    attempts_count = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    succeeded_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    attempts = WebhookAttemptOutputSerializer(many=True)


class WebhookEnvelopeSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Also the `webhook-id` header.")
    type = serializers.CharField()
    created_at = serializers.CharField()
    data = serializers.DictField()


class WebhookEventOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id", help_text="`evt_…`; the `webhook-id` of every delivery.")
    object = constant_field("webhook_event")
    type = serializers.CharField()
    created_at = serializers.DateTimeField()
    envelope = serializers.SerializerMethodField(help_text="The body exactly as pushed (and signed).")
    deliveries = WebhookDeliveryOutputSerializer(many=True)

    @extend_schema_field(WebhookEnvelopeSerializer)
    def get_envelope(self, obj: Any) -> dict[str, Any]:
        return obj.envelope
