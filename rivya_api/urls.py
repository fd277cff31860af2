"""Routes of the public API. Mount with ``path("api/v1/", include("rivya_api.urls"))``.

No trailing slashes. The last route catches every unmatched path, so unknown
routes answer 404 in the error shape before authentication is considered.
"""

from django.urls import path, re_path

from rivya_api.catalog.views import ModelViewSet
from rivya_api.chat import views as chat_views
from rivya_api.common.openapi_views import ApiDocsView, OpenApiDocumentView
from rivya_api.common.views import unknown_route
from rivya_api.credits.urls import urlpatterns as credits_urls
from rivya_api.files.views import FileContentView, FileViewSet
from rivya_api.generations import urls as generation_urls
from rivya_api.keys.urls import urlpatterns as keys_urls
from rivya_api.webhooks.urls import urlpatterns as webhooks_urls

app_name = "rivya_api"

urlpatterns = [
    path("openapi.json", OpenApiDocumentView.as_view(), name="openapi"),
    path("docs", ApiDocsView.as_view(url_name="rivya_api:openapi"), name="docs"),
    path("models", ModelViewSet.as_view({"get": "list"}), name="model-list"),
    path("models/<str:model_id>", ModelViewSet.as_view({"get": "retrieve"}), name="model-detail"),
    path("files", FileViewSet.as_view({"get": "list", "post": "create"}), name="file-list"),
    path("files/<str:file_id>", FileViewSet.as_view({"get": "retrieve", "delete": "destroy"}), name="file-detail"),
    path("files/<str:file_id>/content", FileContentView.as_view(), name="file-content"),
    *generation_urls.urlpatterns,
    *credits_urls,
    *webhooks_urls,
    *keys_urls,
    path("chat/completions", chat_views.ChatCompletionsView.as_view(), name="chat-completions"),
    path("chat/sessions", chat_views.ChatSessionViewSet.as_view({"get": "list"}), name="chat-sessions"),
    path(
        "chat/sessions/<str:session_id>",
        chat_views.ChatSessionViewSet.as_view({"get": "retrieve"}),
        name="chat-session",
    ),
    path(
        "chat/sessions/<str:session_id>/stream",
        chat_views.ChatSessionStreamView.as_view(),
        name="chat-session-stream",
    ),
    path(
        "chat/sessions/<str:session_id>/cancel", chat_views.ChatSessionCancelView.as_view(), name="chat-session-cancel"
    ),
    re_path(r"^.*$", unknown_route, name="unknown-route"),
]
