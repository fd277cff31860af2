"""A host's own DRF view next to the API: it must keep the host's REST_FRAMEWORK defaults."""

from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView


class HostPingView(APIView):
    def get(self, request):  # type: ignore[no-untyped-def]
        return Response({"pong": True})


urlpatterns = [
    path("host/ping", HostPingView.as_view()),
    path("", include("config.urls")),
]
