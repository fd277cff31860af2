"""Routes of the webhooks resource (no trailing slashes); included by ``rivya_api.urls``."""

from django.urls import path

from rivya_api.webhooks.views import WebhookEndpointViewSet, WebhookEventViewSet

endpoints = WebhookEndpointViewSet.as_view({"get": "list", "post": "create"})
endpoint = WebhookEndpointViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})
rotate_secret = WebhookEndpointViewSet.as_view({"post": "rotate_secret"})
test = WebhookEndpointViewSet.as_view({"post": "test"})
events = WebhookEventViewSet.as_view({"get": "list"})
event = WebhookEventViewSet.as_view({"get": "retrieve"})
redeliver = WebhookEventViewSet.as_view({"post": "redeliver"})

urlpatterns = [
    path("webhooks", endpoints, name="webhook-endpoints"),
    path("webhooks/<str:endpoint_id>", endpoint, name="webhook-endpoint"),
    path("webhooks/<str:endpoint_id>/rotate-secret", rotate_secret, name="webhook-endpoint-rotate-secret"),
    path("webhooks/<str:endpoint_id>/test", test, name="webhook-endpoint-test"),
    path("webhook-events", events, name="webhook-events"),
    path("webhook-events/<str:event_id>", event, name="webhook-event"),
    path("webhook-events/<str:event_id>/redeliver", redeliver, name="webhook-event-redeliver"),
]
