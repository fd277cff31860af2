"""Views of the webhooks resource: thin ViewSets over ``rivya_webhooks`` services and selectors.

    /api/v1/webhooks                         GET list, POST create
    /api/v1/webhooks/{id}                    GET, PATCH, DELETE
    /api/v1/webhooks/{id}/rotate-secret      POST
    /api/v1/webhooks/{id}/test               POST
    /api/v1/webhook-events                   GET list (filters: type, created_gte, created_lt, delivery_state)
    /api/v1/webhook-events/{id}              GET
    /api/v1/webhook-events/{id}/redeliver    POST

Every query is scoped to the request's account, so another account's endpoint or
event is a 404. Domain errors of ``rivya_webhooks`` are mapped to HTTP in ``common.errors.DOMAIN_ERRORS``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from rivya_api.common.errors import NotFoundError
from rivya_api.common.pagination import page_response
from rivya_api.common.parsers import JSONParser
from rivya_api.common.schema import (
    PAGINATION_PARAMETERS,
    ErrorExample,
    error_responses,
    extend_schema,  # drf-spectacular's, on its AutoSchema whatever the host's DEFAULT_SCHEMA_CLASS
    list_of,
)
from rivya_api.common.views import AccountScopedMixin
from rivya_api.webhooks.serializers import (
    WebhookEndpointCreateInputSerializer,
    WebhookEndpointDeletedOutputSerializer,
    WebhookEndpointOutputSerializer,
    WebhookEndpointUpdateInputSerializer,
    WebhookEndpointWithSecretOutputSerializer,
    WebhookEventFilterSerializer,
    WebhookEventOutputSerializer,
    WebhookRedeliverInputSerializer,
)
from rivya_webhooks.models import WebhookEndpoint, WebhookEvent
from rivya_webhooks.selectors import (
    webhook_endpoint_get,
    webhook_endpoint_list,
    webhook_event_get,
    webhook_event_list,
)
from rivya_webhooks.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_test,
    webhook_endpoint_update,
    webhook_event_redeliver,
)

# Most specific first: the table is searched in order with isinstance.

TAG_ENDPOINTS = "Webhook endpoints"
TAG_EVENTS = "Webhook events"

ENDPOINT_ID = OpenApiParameter("endpoint_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="`we_…`")
EVENT_ID = OpenApiParameter("event_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="`evt_…`")

_ENDPOINT_EXAMPLE = {
    "id": "we_4hVn0cXr9TQm2pLk7sD1aWbE",
    "object": "webhook_endpoint",
    "url": "https://example.com/hooks/rivya",
    "description": "Production receiver",
    "event_types": ["generation.succeeded", "generation.failed"],
    "enabled": True,
    "disabled_reason": None,
    "disabled_at": None,
    "failing_since": None,
    "created_at": "2026-05-01T09:30:00.000000Z",
    "updated_at": "2026-05-01T09:30:00.000000Z",
}
_SECRET_EXAMPLE = {**_ENDPOINT_EXAMPLE, "secret": "whsec_Jb6cJ0mS0qfqF9k3Xq3mYV1dSx6C2mhcOe3QvVfQm1E="}
_EVENT_EXAMPLE = {
    "id": "evt_7QkZr2bN0xLs9VtD4yHc1pWe",
    "object": "webhook_event",
    "type": "webhook.test",
    "created_at": "2026-05-01T09:31:00.000000Z",
    "envelope": {
        "id": "evt_7QkZr2bN0xLs9VtD4yHc1pWe",
        "type": "webhook.test",
        "created_at": "2026-05-01T09:31:00.000000Z",
        "data": {
            "endpoint_id": "we_4hVn0cXr9TQm2pLk7sD1aWbE",
            "message": "A test event from the endpoint's test action.",
        },
    },
    "deliveries": [
        {
            "id": "whd_0mNc5Vx8LrT2kQ9sJ4hW7pYe",
            "object": "webhook_delivery",
            "endpoint_id": "we_4hVn0cXr9TQm2pLk7sD1aWbE",
            "url": "https://example.com/hooks/rivya",
            "state": "succeeded",
            "attempts_count": 2,
            "next_attempt_at": None,
            "last_attempt_at": "2026-05-01T09:31:06.000000Z",
            "succeeded_at": "2026-05-01T09:31:06.000000Z",
            "created_at": "2026-05-01T09:31:00.000000Z",
            "attempts": [
                {
                    "id": "wha_2pL8xKq1Zc7NvB0rT5mS9dWe",
                    "object": "webhook_delivery_attempt",
                    "created_at": "2026-05-01T09:31:00.000000Z",
                    "trigger": "scheduled",
                    "url": "https://example.com/hooks/rivya",
                    "status_code": 503,
                    "error": "http_status",
                    "error_message": "HTTP 503.",
                    "latency_ms": 41,
                    "response_body": "upstream unavailable",
                    "response_truncated": False,
                    "location": None,
                    "next_attempt_at": "2026-05-01T09:31:05.000000Z",
                },
                {
                    "id": "wha_9sD3fG6hJ1kL4zX7cV0bN2mQ",
                    "object": "webhook_delivery_attempt",
                    "created_at": "2026-05-01T09:31:06.000000Z",
                    "trigger": "scheduled",
                    "url": "https://example.com/hooks/rivya",
                    "status_code": 200,
                    "error": None,
                    "error_message": "",
                    "latency_ms": 38,
                    "response_body": "ok",
                    "response_truncated": False,
                    "location": None,
                    "next_attempt_at": None,
                },
            ],
        }
    ],
}

_NOT_FOUND_ENDPOINT = ErrorExample("not_found", "No such webhook endpoint: 'we_x'.", "id")
_NOT_FOUND_EVENT = ErrorExample("not_found", "No such webhook event: 'evt_x'.", "id")
_URL_ERRORS = [
    ErrorExample("invalid_url", "url must use https.", "url"),
    ErrorExample("url_not_allowed", "The host 'intranet.example.com' resolves to 10.0.0.7, a private address.", "url"),
    ErrorExample("url_unresolvable", "The host 'nowhere.example.com' does not resolve.", "url"),
]
_TYPE_ERRORS = [
    ErrorExample(
        "unknown_event_type",
        "Unknown event type: 'generation.done'. Valid types: generation.canceled, generation.failed, "
        'generation.succeeded, webhook.test, webhook_endpoint.disabled; or "*" for every type, also those added later.',
        "event_types",
    ),
    ErrorExample("invalid_parameter", "event_types must be a non-empty list of event type names.", "event_types"),
]


def _page(items: list[Any]) -> dict[str, Any]:
    return {"object": "list", "data": items, "has_more": False, "next_cursor": None}


@contextmanager
def _gone_is_404(public_id: str) -> Iterator[None]:
    """No such endpoint: never was, another account's, or deleted by a concurrent request
    between the lookup and a service's row lock."""
    try:
        yield
    except WebhookEndpoint.DoesNotExist:
        raise NotFoundError(f"No such webhook endpoint: {public_id!r}.", param="id") from None


def _endpoint_or_404(account: Any, public_id: str) -> WebhookEndpoint:
    with _gone_is_404(public_id):
        return webhook_endpoint_get(account=account, public_id=public_id)


def _event_or_404(account: Any, public_id: str) -> WebhookEvent:
    try:
        return webhook_event_get(account=account, public_id=public_id)
    except WebhookEvent.DoesNotExist:
        raise NotFoundError(f"No such webhook event: {public_id!r}.", param="id") from None


class WebhookEndpointViewSet(AccountScopedMixin, viewsets.ViewSet):
    """Webhook endpoints of the request's account."""

    required_scopes = {
        "list": "webhooks:read",
        "retrieve": "webhooks:read",
        "create": "webhooks:write",
        "partial_update": "webhooks:write",
        "destroy": "webhooks:write",
        "rotate_secret": "webhooks:write",
        "test": "webhooks:write",
    }  # rivya_api.keys.scopes

    lookup_url_kwarg = "endpoint_id"
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="listWebhookEndpoints",
        summary="List webhook endpoints",
        description="The account's endpoints, newest first. Secrets are never listed.",
        tags=[TAG_ENDPOINTS],
        parameters=PAGINATION_PARAMETERS,
        responses={200: list_of(WebhookEndpointOutputSerializer), **error_responses(400)},
        examples=[
            OpenApiExample("endpoints", value=_page([_ENDPOINT_EXAMPLE]), response_only=True, status_codes=["200"])
        ],
    )
    def list(self, request: Request) -> Response:
        endpoints = webhook_endpoint_list(account=self.account)
        return page_response(request, endpoints, lambda page: WebhookEndpointOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="createWebhookEndpoint",
        summary="Create a webhook endpoint",
        description=(
            "Registers a URL that receives signed events (Standard Webhooks: `webhook-id`, "
            "`webhook-timestamp`, `webhook-signature`). The URL must be https (a development server "
            "also takes http), must not carry credentials, and must resolve to public addresses "
            "only. The response carries the signing `secret`, shown only here and on rotation."
        ),
        tags=[TAG_ENDPOINTS],
        request=WebhookEndpointCreateInputSerializer,
        responses={
            201: WebhookEndpointWithSecretOutputSerializer,
            **error_responses(400, codes={400: [*_TYPE_ERRORS, *_URL_ERRORS]}),
        },
        examples=[
            OpenApiExample(
                "create",
                value={
                    "url": "https://example.com/hooks/rivya",
                    "event_types": ["generation.succeeded", "generation.failed"],
                    "description": "Production receiver",
                },
                request_only=True,
            ),
            OpenApiExample(
                "every event type",
                value={"url": "https://example.com/hooks/rivya", "event_types": ["*"]},
                request_only=True,
            ),
            OpenApiExample("created", value=_SECRET_EXAMPLE, response_only=True, status_codes=["201"]),
        ],
    )
    def create(self, request: Request) -> Response:
        data = WebhookEndpointCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = webhook_endpoint_create(account=self.account, **data.validated_data)
        body = WebhookEndpointWithSecretOutputSerializer(endpoint, context={"secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="getWebhookEndpoint",
        summary="Get a webhook endpoint",
        tags=[TAG_ENDPOINTS],
        parameters=[ENDPOINT_ID],
        responses={200: WebhookEndpointOutputSerializer, **error_responses(404, codes={404: [_NOT_FOUND_ENDPOINT]})},
        examples=[OpenApiExample("endpoint", value=_ENDPOINT_EXAMPLE, response_only=True, status_codes=["200"])],
    )
    def retrieve(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint_or_404(self.account, endpoint_id)
        return Response(WebhookEndpointOutputSerializer(endpoint).data)

    @extend_schema(
        operation_id="updateWebhookEndpoint",
        summary="Update a webhook endpoint",
        description=(
            "Changes the given fields. A new `url` passes the creation checks. `enabled: false` pauses "
            "deliveries; `enabled: true` resumes them (including after an automatic disable)."
        ),
        tags=[TAG_ENDPOINTS],
        parameters=[ENDPOINT_ID],
        request=WebhookEndpointUpdateInputSerializer,
        responses={
            200: WebhookEndpointOutputSerializer,
            **error_responses(400, 404, codes={400: [*_TYPE_ERRORS, *_URL_ERRORS], 404: [_NOT_FOUND_ENDPOINT]}),
        },
        examples=[
            OpenApiExample("re-enable", value={"enabled": True}, request_only=True),
            OpenApiExample("updated", value=_ENDPOINT_EXAMPLE, response_only=True, status_codes=["200"]),
        ],
    )
    def partial_update(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint_or_404(self.account, endpoint_id)
        data = WebhookEndpointUpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with _gone_is_404(endpoint_id):
            endpoint = webhook_endpoint_update(endpoint=endpoint, **data.validated_data)
        return Response(WebhookEndpointOutputSerializer(endpoint).data)

    @extend_schema(
        operation_id="deleteWebhookEndpoint",
        summary="Delete a webhook endpoint",
        description="Deletes the endpoint and its pending deliveries. Its events stay in the event log.",
        tags=[TAG_ENDPOINTS],
        parameters=[ENDPOINT_ID],
        responses={
            200: WebhookEndpointDeletedOutputSerializer,
            **error_responses(404, codes={404: [_NOT_FOUND_ENDPOINT]}),
        },
        examples=[
            OpenApiExample(
                "deleted",
                value={"id": "we_4hVn0cXr9TQm2pLk7sD1aWbE", "object": "webhook_endpoint", "deleted": True},
                response_only=True,
                status_codes=["200"],
            )
        ],
    )
    def destroy(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint_or_404(self.account, endpoint_id)
        webhook_endpoint_delete(endpoint=endpoint)
        return Response({"id": endpoint_id, "object": "webhook_endpoint", "deleted": True})

    @extend_schema(
        operation_id="rotateWebhookEndpointSecret",
        summary="Rotate an endpoint's signing secret",
        description=(
            "Returns a new `secret` (shown only here). For 24 hours every delivery carries two "
            "signatures, one per secret, so receivers can switch without losing a request."
        ),
        tags=[TAG_ENDPOINTS],
        parameters=[ENDPOINT_ID],
        request=None,
        responses={
            200: WebhookEndpointWithSecretOutputSerializer,
            **error_responses(404, codes={404: [_NOT_FOUND_ENDPOINT]}),
        },
        examples=[OpenApiExample("rotated", value=_SECRET_EXAMPLE, response_only=True, status_codes=["200"])],
    )
    def rotate_secret(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint_or_404(self.account, endpoint_id)
        with _gone_is_404(endpoint_id):
            endpoint, secret = webhook_endpoint_rotate_secret(endpoint=endpoint)
        return Response(WebhookEndpointWithSecretOutputSerializer(endpoint, context={"secret": secret}).data)

    @extend_schema(
        operation_id="testWebhookEndpoint",
        summary="Send a test event",
        description=(
            "Publishes a `webhook.test` event to this endpoint only, whatever types it subscribes to. "
            "Returns the event; follow its delivery in the event log."
        ),
        tags=[TAG_ENDPOINTS],
        parameters=[ENDPOINT_ID],
        request=None,
        responses={
            202: WebhookEventOutputSerializer,
            **error_responses(
                404,
                409,
                codes={
                    404: [_NOT_FOUND_ENDPOINT],
                    409: [ErrorExample("endpoint_disabled", "The endpoint is disabled; enable it first.")],
                },
            ),
        },
        examples=[OpenApiExample("queued", value=_EVENT_EXAMPLE, response_only=True, status_codes=["202"])],
    )
    def test(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint_or_404(self.account, endpoint_id)
        with _gone_is_404(endpoint_id):
            event = webhook_endpoint_test(endpoint=endpoint)
        event = webhook_event_get(account=self.account, public_id=event.public_id)
        return Response(WebhookEventOutputSerializer(event).data, status=status.HTTP_202_ACCEPTED)


class WebhookEventViewSet(AccountScopedMixin, viewsets.ViewSet):
    """The event log of the request's account."""

    required_scopes = {
        "list": "webhooks:read",
        "retrieve": "webhooks:read",
        "redeliver": "webhooks:write",
    }  # rivya_api.keys.scopes

    lookup_url_kwarg = "event_id"
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="listWebhookEvents",
        summary="List webhook events",
        description=(
            "The account's events, newest first (kept at least 30 days), each with its envelope exactly "
            "as pushed and every endpoint's delivery with every attempt. `delivery_state=undelivered` "
            "lists events some endpoint has not received yet: poll it to reconcile after an outage."
        ),
        tags=[TAG_EVENTS],
        parameters=[
            *PAGINATION_PARAMETERS,
            OpenApiParameter("type", OpenApiTypes.STR, description="Only events of this type."),
            OpenApiParameter("created_gte", OpenApiTypes.DATETIME, description="Created at or after (ISO 8601)."),
            OpenApiParameter("created_lt", OpenApiTypes.DATETIME, description="Created before (ISO 8601)."),
            OpenApiParameter(
                "delivery_state",
                OpenApiTypes.STR,
                enum=["undelivered", "pending", "failed", "succeeded"],
                description=(
                    "`undelivered`: some delivery is pending or failed; `pending`/`failed`: some delivery is in "
                    "that state; `succeeded`: every delivery succeeded."
                ),
            ),
        ],
        responses={200: list_of(WebhookEventOutputSerializer), **error_responses(400)},
        examples=[OpenApiExample("events", value=_page([_EVENT_EXAMPLE]), response_only=True, status_codes=["200"])],
    )
    def list(self, request: Request) -> Response:
        filters = WebhookEventFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = webhook_event_list(account=self.account, **filters.validated_data)
        return page_response(request, queryset, lambda page: WebhookEventOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="getWebhookEvent",
        summary="Get a webhook event",
        tags=[TAG_EVENTS],
        parameters=[EVENT_ID],
        responses={200: WebhookEventOutputSerializer, **error_responses(404, codes={404: [_NOT_FOUND_EVENT]})},
        examples=[OpenApiExample("event", value=_EVENT_EXAMPLE, response_only=True, status_codes=["200"])],
    )
    def retrieve(self, request: Request, event_id: str) -> Response:
        return Response(WebhookEventOutputSerializer(_event_or_404(self.account, event_id)).data)

    @extend_schema(
        operation_id="redeliverWebhookEvent",
        summary="Redeliver a webhook event",
        description=(
            "Sends the event again now, with the same `webhook-id`, to every enabled endpoint it was "
            "delivered to (or to `endpoint_id` only). Each delivery starts a fresh retry schedule; its "
            "next attempt is recorded as `manual`."
        ),
        tags=[TAG_EVENTS],
        parameters=[EVENT_ID],
        request=WebhookRedeliverInputSerializer,
        responses={
            202: WebhookEventOutputSerializer,
            **error_responses(
                404,
                409,
                codes={
                    404: [
                        _NOT_FOUND_EVENT,
                        ErrorExample("not_found", "No such webhook endpoint: 'we_x'.", "endpoint_id"),
                    ],
                    409: [
                        ErrorExample("nothing_to_redeliver", "The event has no delivery to an enabled endpoint."),
                        ErrorExample("endpoint_disabled", "The endpoint is disabled; enable it first.", "endpoint_id"),
                    ],
                },
            ),
        },
        examples=[
            OpenApiExample("one endpoint", value={"endpoint_id": "we_4hVn0cXr9TQm2pLk7sD1aWbE"}, request_only=True),
            OpenApiExample("queued", value=_EVENT_EXAMPLE, response_only=True, status_codes=["202"]),
        ],
    )
    def redeliver(self, request: Request, event_id: str) -> Response:
        event = _event_or_404(self.account, event_id)
        data = WebhookRedeliverInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = None
        if data.validated_data.get("endpoint_id"):
            try:
                endpoint = webhook_endpoint_get(account=self.account, public_id=data.validated_data["endpoint_id"])
            except WebhookEndpoint.DoesNotExist:
                raise NotFoundError(
                    f"No such webhook endpoint: {data.validated_data['endpoint_id']!r}.", param="endpoint_id"
                ) from None
        webhook_event_redeliver(event=event, endpoint=endpoint)
        event = webhook_event_get(account=self.account, public_id=event.public_id)
        return Response(WebhookEventOutputSerializer(event).data, status=status.HTTP_202_ACCEPTED)
