"""Test-only routes: an authenticated view inside the API namespace, plus the real API routes."""

from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView

from rivya_api import urls as api_urls
from rivya_api.common.views import AccountScopedMixin


class WhoAmIView(AccountScopedMixin, APIView):
    required_scopes = {"get": None, "post": None}  # any key
    """Echoes who the request acts as, the way every resource view reaches it."""

    def get(self, request):  # type: ignore[no-untyped-def]
        return Response({"object": "whoami", "account": str(self.account.pk), "api_key": request.auth.public_id})

    def post(self, request):  # type: ignore[no-untyped-def]
        return Response({"object": "whoami", "account": str(self.account.pk)}, status=201)


class UnthrottledView(WhoAmIView):
    """API-key authentication and no throttle: its requests count against no limit."""

    def get_throttles(self):  # type: ignore[no-untyped-def]
        return []


test_patterns = [path("_test/whoami", WhoAmIView.as_view()), path("_test/unthrottled", UnthrottledView.as_view())]

urlpatterns = [
    path("api/v1/", include((test_patterns + api_urls.urlpatterns, "rivya_api"))),
    path("", include("config.urls")),
]
