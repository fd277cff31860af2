"""Routes of the public API. Mount with ``path("api/v1/", include("rivya_api.urls"))``.

No trailing slashes. The last route catches every unmatched path, so unknown
routes answer 404 in the error shape before authentication is considered.
"""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from rivya_api.chat import views as chat_views
from rivya_api.common.views import unknown_route

app_name = "rivya_api"

urlpatterns = [
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("docs", SpectacularSwaggerView.as_view(url_name="rivya_api:openapi"), name="docs"),
    path("chat/completions", chat_views.chat_completions, name="chat-completions"),
    path("chat/sessions", chat_views.ChatSessionViewSet.as_view({"get": "list"}), name="chat-sessions"),
    path(
        "chat/sessions/<str:session_id>",
        chat_views.ChatSessionViewSet.as_view({"get": "retrieve"}),
        name="chat-session",
    ),
    path("chat/sessions/<str:session_id>/stream", chat_views.chat_session_stream, name="chat-session-stream"),
    path(
        "chat/sessions/<str:session_id>/cancel", chat_views.ChatSessionCancelView.as_view(), name="chat-session-cancel"
    ),
    re_path(r"^.*$", unknown_route, name="unknown-route"),
]
