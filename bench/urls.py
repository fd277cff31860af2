"""The reference project's URLs plus ``GET /bench/hello``: a bare DRF endpoint, the throughput baseline."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import urlpatterns as project_urlpatterns


class HelloView(APIView):
    """DRF with nothing of ours: no authentication, no throttle, no database."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    def get(self, request):
        return Response({"hello": "world"})


urlpatterns = [path("bench/hello", HelloView.as_view(), name="bench-hello"), *project_urlpatterns]
