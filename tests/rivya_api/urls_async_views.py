"""Test-only views on ``AsyncApiView`` (``tests/rivya_api/test_async_views.py``): a sync, an async and a
streaming async handler, each counting how often it runs."""

from collections import Counter

from django.http import JsonResponse, StreamingHttpResponse
from django.urls import include, path
from rest_framework.response import Response

from rivya_api import urls as api_urls
from rivya_api.common.async_views import AsyncApiView
from rivya_api.common.errors import ApiError

calls: Counter = Counter()


class SyncProbe(AsyncApiView):
    required_scopes = {"post": "chat:write"}

    def post(self, request):  # type: ignore[no-untyped-def]
        calls["sync handler"] += 1
        if request.data.get("fail"):
            raise ApiError("Refused.", code="refused", status=409)
        return Response({"object": "probe", "handler": "sync"})


class AsyncProbe(AsyncApiView):
    required_scopes = {"post": "chat:write"}

    def prepare(self, request):  # type: ignore[no-untyped-def]
        calls["prepare"] += 1
        if request.data.get("fail") == "prepare":
            raise ApiError("Refused while preparing.", code="refused", status=409)
        return {"account": self.account.pk}

    async def post(self, request, prepared):  # type: ignore[no-untyped-def]
        calls["async handler"] += 1
        if request.data.get("fail") == "handler":
            raise ApiError("Refused.", code="refused", status=409)
        return JsonResponse({"object": "probe", "handler": "async", "account": prepared["account"]})


class StreamProbe(AsyncApiView):
    required_scopes = {"get": "chat:read"}

    async def get(self, request, prepared):  # type: ignore[no-untyped-def]
        calls["stream handler"] += 1

        async def body():  # type: ignore[no-untyped-def]
            for index in range(3):
                yield f"data: {index}\n\n".encode()

        return StreamingHttpResponse(body(), content_type="text/event-stream")


test_patterns = [
    path("_test/sync", SyncProbe.as_view()),
    path("_test/async", AsyncProbe.as_view()),
    path("_test/stream", StreamProbe.as_view()),
]

urlpatterns = [
    path("api/v1/", include((test_patterns + api_urls.urlpatterns, "rivya_api"))),
    path("", include("config.urls")),
]
