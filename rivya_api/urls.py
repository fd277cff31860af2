"""Routes of the public API. Mount with ``path("api/v1/", include("rivya_api.urls"))``.

No trailing slashes. The last route catches every unmatched path, so unknown
routes answer 404 in the error shape before authentication is considered.
"""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from rivya_api.common.views import unknown_route
from rivya_api.webhooks.urls import urlpatterns as webhooks_urls

app_name = "rivya_api"

urlpatterns = [
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("docs", SpectacularSwaggerView.as_view(url_name="rivya_api:openapi"), name="docs"),
    *webhooks_urls,
    re_path(r"^.*$", unknown_route, name="unknown-route"),
]
