"""Routes of the keys resource (no trailing slashes); included by ``rivya_api.urls``."""

from django.urls import path

from rivya_api.keys.views import APIKeyViewSet, CurrentKeyView

urlpatterns = [
    path("key", CurrentKeyView.as_view(), name="current-key"),
    path("keys", APIKeyViewSet.as_view({"get": "list", "post": "create"}), name="keys"),
    path(
        "keys/<str:key_id>",
        APIKeyViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="key",
    ),
]
