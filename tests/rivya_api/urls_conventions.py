"""Test-only routes inside the API namespace, for the conventions every view shares."""

from django.db import OperationalError
from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView

from rivya_api import urls as api_urls
from rivya_api.common.views import ApiViewDefaults
from tests.rivya_api.background_probe import probe_view


class EchoView(ApiViewDefaults, APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def post(self, request):  # type: ignore[no-untyped-def]
        return Response({"object": "echo", "data": request.data})


class BoomView(ApiViewDefaults, APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):  # type: ignore[no-untyped-def]
        raise RuntimeError("kaboom: secret detail that must not leak")


class DatabaseDownView(ApiViewDefaults, APIView):
    """Raises what Django raises when PostgreSQL restarts under a request."""

    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):  # type: ignore[no-untyped-def]
        raise OperationalError("server closed the connection unexpectedly")


def database_down_plain(request):  # type: ignore[no-untyped-def]
    raise OperationalError("connection failed: Connection refused")


test_patterns = [
    path("_test/echo", EchoView.as_view()),
    path("_test/boom", BoomView.as_view()),
    path("_test/background", probe_view),
    path("_test/database-down", DatabaseDownView.as_view()),
    path("_test/database-down-plain", database_down_plain),
]

urlpatterns = [
    path("api/v1/", include((test_patterns + api_urls.urlpatterns, "rivya_api"))),
    path("", include("config.urls")),
]
