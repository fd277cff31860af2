"""A host's own DRF view next to the API: it must keep the host's REST_FRAMEWORK defaults."""

from django.urls import include, path
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView


class HostPingView(APIView):
    """A plain DRF view. DRF fixes APIView's defaults when it is first imported; in this test process
    that happened under the reference project's settings, so the view reads the host's defaults at
    request time, as a view of a host started with them would have them (tests/packaging runs one)."""

    def get_authenticators(self):  # type: ignore[no-untyped-def]
        return [cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES]

    def get_permissions(self):  # type: ignore[no-untyped-def]
        return [cls() for cls in api_settings.DEFAULT_PERMISSION_CLASSES]

    def get_renderers(self):  # type: ignore[no-untyped-def]
        return [cls() for cls in api_settings.DEFAULT_RENDERER_CLASSES]

    def get_exception_handler(self):  # type: ignore[no-untyped-def]
        return api_settings.EXCEPTION_HANDLER

    def get(self, request):  # type: ignore[no-untyped-def]
        return Response({"pong": True})


urlpatterns = [
    path("host/ping", HostPingView.as_view()),
    path("", include("config.urls")),
]
